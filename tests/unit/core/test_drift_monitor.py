"""DriftMonitor: partial entries in, classified and gated drift events out (no broker)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from rollguard.analysis import Finding
from rollguard.contracts import Alert
from rollguard.detectors.aggregates import VariantStats
from rollguard.drift_monitor import DriftConfig, DriftEvent, DriftMonitor, to_alert
from rollguard.pipeline import Analyzer, SpecBook
from rollguard.policy import RolloutState, decide
from rollguard.replay import replay
from rollguard.simulate import Traffic
from rollguard.spec import RolloutSpec, load_spec, parse_spec

SPEC = load_spec(Path(__file__).resolve().parents[3] / "rollguard" / "specs" / "support-reply.yaml")
PREMIUM = (("tier", "premium"),)
CONFIG = DriftConfig(tolerance_s=120, quiet_s=60, cooldown_s=600)
N = 60_000  # responses; event time 20/s, so 3,000 s; the ramp runs from response 20,000 to 30,000


def ramp(events: Iterator[dict[str, Any]], arms: set[str], seg: dict[str, str], start: int, length: int,
         factor: float) -> Iterator[dict[str, Any]]:
    """A gradual latency drift: x1 at response ``start`` rising linearly to x``factor`` ``length`` later."""
    i = 0
    for e in events:
        if e["schema"].startswith("rollguard.response"):
            i += 1
            if i >= start and e["variant"] in arms and all(e["segment"].get(k) == v for k, v in seg.items()):
                e["latency_ms"] = round(e["latency_ms"] * (1 + (factor - 1) * min(1.0, (i - start) / length)), 2)
        yield e


@dataclass
class Trace:
    """What the analyzer handed the monitor, call by call, so a run can be repeated without the pipeline."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[DriftEvent] = field(default_factory=list)


class DriftAnalyzer(Analyzer):
    """The intended wiring: ``on_entry`` feeds the monitor, each partial ends with ``evaluate``."""

    def __init__(self, specs: SpecBook, monitor: DriftMonitor, trace: Trace) -> None:
        super().__init__(specs)
        self.monitor, self.trace = monitor, trace
        self.on_entry = self._entry

    def _entry(self, feature: str, seg: str, arm: str, stats: VariantStats, rows: list[list[Any]]) -> None:
        self.trace.calls.append(("observe", feature, seg, arm, stats.to_dict(), rows))
        self.monitor.observe(feature, seg, arm, stats, rows)

    def apply(self, raw: bytes, **kw: Any) -> list[Any]:
        out = super().apply(raw, **kw)
        clock = self.features[orjson.loads(raw)["feature"]].clock
        self.trace.calls.append(("evaluate", clock))
        self.trace.events.extend(self.monitor.evaluate(SPEC, clock, action="pause"))
        return out


def run_replay(arms: set[str]) -> tuple[DriftMonitor, Trace]:
    specs = SpecBook({SPEC.feature: SPEC})
    monitor = DriftMonitor(specs.get, CONFIG)
    trace = Trace()
    events = ramp(Traffic(seed=3, events_per_s=20).events(N), arms, {"tier": "premium"}, N // 3, N // 6, 1.6)
    replay((orjson.dumps(e) for e in events), specs, analyzer=DriftAnalyzer(specs, monitor, trace))
    return monitor, trace


def alerts(events: list[DriftEvent], kind: str | None = None) -> list[DriftEvent]:
    return [e for e in events if e.phase == "alert" and (kind is None or e.kind == kind)]


@pytest.fixture(scope="module")
def canary_drift() -> tuple[DriftMonitor, Trace]:
    return run_replay({"canary"})


# ---------------------------------------------------------------------------------------- (1) and (2)


def test_canary_only_drift_in_one_segment_is_a_candidate_regression_there(
        canary_drift: tuple[DriftMonitor, Trace]) -> None:
    monitor, trace = canary_drift
    regressions = alerts(trace.events, "candidate_regression")
    acting = [e for e in regressions if e.action == "pause"]
    assert [(e.scope, e.metric, e.candidate) for e in acting] == [(PREMIUM, "latency_ms", "canary")]
    e = acting[0]
    start = Traffic().start.timestamp()
    assert 1000 < e.at - start < 1700  # the ramp starts at 1,000 s and is complete at 1,500 s
    ev = e.evidence()
    assert ev["classification"] == "candidate_regression" and ev["onset"]["baseline"] is None
    assert ev["canary"] > ev["reference"]["canary"] * 1.2  # the level moved up
    # any other candidate regression of latency is explained by premium, and carries no action
    assert all(x.explained_by == PREMIUM for x in regressions if x is not e and x.metric == "latency_ms")
    assert not alerts(trace.events, "traffic_shift")
    assert monitor.counters(SPEC.feature).banks_capped == 0


def test_same_drift_on_both_arms_is_a_traffic_shift_and_never_a_candidate_regression() -> None:
    _, trace = run_replay({"canary", "baseline"})
    shifts = alerts(trace.events, "traffic_shift")
    assert any(e.scope == PREMIUM and e.metric == "latency_ms" for e in shifts)
    assert not [e for e in alerts(trace.events, "candidate_regression") if e.metric == "latency_ms"]
    assert all(e.action is None for e in trace.events)


def test_event_maps_to_alert_and_to_a_pause_decision(canary_drift: tuple[DriftMonitor, Trace]) -> None:
    _, trace = canary_drift
    e = next(x for x in alerts(trace.events, "candidate_regression") if x.action)
    alert = to_alert(SPEC.feature, e)
    wire = Alert.model_validate_json(alert.to_bytes())
    assert (wire.kind, wire.severity.value, wire.segment) == ("drift", "warn", {"tier": "premium"})
    assert wire.evidence["classification"] == "candidate_regression"
    state = RolloutState(SPEC.feature, spec_version=SPEC.version, stage="canary-25")
    decisions = decide(state, SPEC, [cast(Finding, e.finding())])
    assert len(decisions) == 1 and decisions[0].command is not None
    cmd = decisions[0].command
    assert (cmd.action.value, cmd.scope, cmd.evidence["metric"]) == ("pause", {"tier": "premium"}, "latency_ms")
    assert decide(state, SPEC, [cast(Finding, e.finding())]) == []  # once per scope and stage


# ---------------------------------------------------------------------------------------- direct feeding

MIX_SPEC = parse_spec({
    "feature": "mix", "flag": "mix-flag", "segment_by": ["tier", "use_case"],
    "stages": [{"name": "c", "weight": 0.5}],
})
FLAP_SPEC = parse_spec({"feature": "flap", "flag": "flap-flag", "segment_by": ["tier"],
                        "stages": [{"name": "c", "weight": 0.5}]})


def feed(monitor: DriftMonitor, spec: RolloutSpec, flushes: int, dt: float, requests: int,
         mix: Any, latency: Any, rows_per_key: int = 4, seed: int = 1) -> list[DriftEvent]:
    """Synthetic partials: per flush, per segment and arm, ``requests`` events (counts) and a few rows."""
    rng = random.Random(seed)
    out: list[DriftEvent] = []
    tiers = ("free", "premium")
    for f in range(flushes):
        t = 1_000_000.0 + f * dt
        weights = mix(f)
        for arm in (spec.baseline, spec.candidate):
            for tier in tiers:
                for uc, w in weights.items():
                    n = max(0, round(requests * w))
                    if not n:
                        continue
                    s, rows = VariantStats(), []
                    seg = {"tier": tier, "use_case": uc}
                    for i in range(n):
                        lat = rng.lognormvariate(math.log(800), 0.35) * latency(f, arm, seg)
                        err = rng.random() < 0.01
                        s.add_response(latency_ms=lat, cost_usd=0.002, input_tokens=300, output_tokens=40,
                                       output_chars=160, error=err)
                        if i < rows_per_key:
                            rows.append([t + i * 0.01, lat, 0.002, 300, 40, 160, 40, "latin", err, False, False,
                                         False])
                    key = "|".join(f"{a}={seg[a]}" for a in spec.segment_by)
                    monitor.observe(spec.feature, key, arm, s, rows)
        out.extend(monitor.evaluate(spec, t, action="pause"))
    return out


BASE_MIX = {"billing": 0.3, "technical": 0.4, "account": 0.2, "other": 0.1}
SHIFTED_MIX = {"billing": 0.6, "technical": 0.2, "account": 0.1, "other": 0.1}


def test_use_case_mix_shift_is_an_input_shift_and_holds_the_scope() -> None:
    specs = SpecBook({MIX_SPEC.feature: MIX_SPEC})
    monitor = DriftMonitor(specs.get, CONFIG)
    events = feed(monitor, MIX_SPEC, 240, 5.0, 25, lambda f: BASE_MIX if f < 120 else SHIFTED_MIX,
                  lambda f, arm, seg: 1.0, rows_per_key=1)
    shifts = alerts(events, "input_shift")
    assert {e.scope for e in shifts} >= {(), (("tier", "free"),), (("tier", "premium"),)}
    assert all(e.metric == "use_case" and e.action is None for e in shifts)
    assert all(e.at >= 1_000_000.0 + 120 * 5.0 for e in shifts)
    assert not alerts(events, "candidate_regression") and not alerts(events, "traffic_shift")
    assert monitor.holding(MIX_SPEC.feature, ())
    assert monitor.holding(MIX_SPEC.feature, {"tier": "premium", "use_case": "billing"})


def test_no_input_shift_and_no_hold_on_a_stable_mix() -> None:
    specs = SpecBook({MIX_SPEC.feature: MIX_SPEC})
    monitor = DriftMonitor(specs.get, CONFIG)
    events = feed(monitor, MIX_SPEC, 240, 5.0, 25, lambda f: BASE_MIX, lambda f, arm, seg: 1.0, rows_per_key=1)
    assert not alerts(events)
    assert not monitor.holding(MIX_SPEC.feature, ())


# ---------------------------------------------------------------------------------------- (4) state


def test_state_round_trip_mid_stream_continues_exactly(canary_drift: tuple[DriftMonitor, Trace]) -> None:
    _, trace = canary_drift
    specs = SpecBook({SPEC.feature: SPEC})

    def play(calls: list[tuple[Any, ...]], monitor: DriftMonitor) -> list[DriftEvent]:
        out: list[DriftEvent] = []
        for c in calls:
            if c[0] == "observe":
                monitor.observe(c[1], c[2], c[3], VariantStats.from_dict(c[4]), c[5])
            else:
                out.extend(monitor.evaluate(SPEC, c[1], action="pause"))
        return out

    evals = [i for i, c in enumerate(trace.calls) if c[0] == "evaluate"]
    cut = evals[len(evals) * 2 // 5] + 1  # about 1,200 s: the ramp has begun, not yet detected (~1,400 s)
    whole = play(trace.calls, DriftMonitor(specs.get, CONFIG))
    first = DriftMonitor(specs.get, CONFIG)
    before = play(trace.calls[:cut], first)
    raw = first.to_bytes(SPEC.feature)
    restored = DriftMonitor.from_bytes(raw, specs.get, CONFIG)
    tracks = restored.features[SPEC.feature].tracks
    assert tracks[(PREMIUM, "canary")].bank.detectors["latency_ms"].reference is not None  # no new warm-up
    after = play(trace.calls[cut:], restored)
    assert [e.evidence() for e in before + after] == [e.evidence() for e in whole]
    assert any(e.kind == "candidate_regression" and e.action for e in after)


def test_footprint_and_bank_cap() -> None:
    specs = SpecBook({MIX_SPEC.feature: MIX_SPEC})
    monitor = DriftMonitor(specs.get, DriftConfig(max_banks=4))
    feed(monitor, MIX_SPEC, 3, 5.0, 10, lambda f: BASE_MIX, lambda f, arm, seg: 1.0, rows_per_key=1)
    sizes = monitor.footprint(MIX_SPEC.feature)
    assert len(sizes) == 4 and all(0 < v < 64_000 for v in sizes.values())
    assert monitor.counters(MIX_SPEC.feature).banks_capped > 0


def test_unknown_arms_and_overflow_segment() -> None:
    specs = SpecBook({MIX_SPEC.feature: MIX_SPEC})
    monitor = DriftMonitor(specs.get, CONFIG)
    s = VariantStats()
    s.add_response(latency_ms=100.0)
    monitor.observe(MIX_SPEC.feature, "tier=free|use_case=billing", "experiment-b", s, [])
    monitor.observe(MIX_SPEC.feature, "_overflow", "baseline", s, [])
    monitor.flush(MIX_SPEC.feature, 0.0)
    assert monitor.counters(MIX_SPEC.feature).ignored_arms == 1
    assert set(monitor.features[MIX_SPEC.feature].tracks) == {((), "baseline")}


# ---------------------------------------------------------------------------------------- (5) flapping


def test_flapping_canary_does_not_storm() -> None:
    specs = SpecBook({FLAP_SPEC.feature: FLAP_SPEC})
    config = DriftConfig(tolerance_s=60, quiet_s=60, cooldown_s=1800)
    monitor = DriftMonitor(specs.get, config)
    flushes, dt, half = 2160, 5.0, 60  # 3 h; premium canary latency x2 for 5 min, x1 for 5 min, ...

    def latency(f: int, arm: str, seg: dict[str, str]) -> float:
        return 2.0 if arm == "canary" and seg["tier"] == "premium" and f >= 240 and (f // half) % 2 == 0 else 1.0

    events = feed(monitor, FLAP_SPEC, flushes, dt, 4, lambda f: {"billing": 1.0}, latency)
    det = monitor.features[FLAP_SPEC.feature].tracks[(PREMIUM, "canary")].bank.detectors["latency_ms"]
    span = (flushes - 240) * dt
    bound = 1 + span / (config.quiet_s + config.cooldown_s)
    assert det.n_episodes > bound  # the detector itself flaps ...
    by_key: dict[tuple[Any, ...], int] = {}
    for e in alerts(events):
        k = (e.scope, e.metric, e.kind)
        by_key[k] = by_key.get(k, 0) + 1
    assert by_key.get((PREMIUM, "latency_ms", "candidate_regression"), 0) >= 1
    assert max(by_key.values()) <= bound  # ... the alerts do not
    recoveries = [e for e in events if e.phase == "recovery"]
    assert len(recoveries) <= len(alerts(events))

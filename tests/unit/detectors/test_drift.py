"""Drift detectors: real shifts found, stationary streams quiet, exact pickle replay, decisions."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollguard.detectors.drift import (
    BankConfig,
    BinaryRateDrift,
    CategoricalMixShift,
    DetectorBank,
    DistributionShift,
    DriftClassifier,
    DriftKind,
    DriftState,
    EpisodeGate,
    EpisodeTracker,
    LogScaleShift,
    MultivariateAnomaly,
    classify,
    classify_banks,
    length_bucket,
    script_of,
)

CP = 6000  # change point used by the shift tests


# -- stream helpers ----------------------------------------------------------------------------


def bern(rng: random.Random, p0: float, p1: float, n: int = 10_000) -> list[bool]:
    return [rng.random() < (p0 if i < CP else p1) for i in range(n)]


def latency(rng: random.Random, factor: float, n: int = 9000, sigma: float = 0.5) -> list[float]:
    return [rng.lognormvariate(6.5, sigma) * (factor if i >= CP else 1.0) for i in range(n)]


def tokens(rng: random.Random, factor: float, n: int = 9000) -> list[float]:
    return [
        float(max(1, round(rng.lognormvariate(5.0, 0.6) * (factor if i >= CP else 1.0)))) for i in range(n)
    ]


def mv_event(rng: random.Random, bad: bool) -> list[float]:
    lat = rng.lognormvariate(6.5, 0.35) * (20 if bad else 1)
    tin = rng.lognormvariate(6.0, 0.5)
    tout = 0.0 if bad else rng.lognormvariate(5.0, 0.5)
    return [lat, tin, tout, 1e-6 * (tin + 3 * tout), 4 * tout]


def mv(rng: random.Random, frac_bad: float, n: int = 9000) -> list[list[float]]:
    return [mv_event(rng, i >= CP and rng.random() < frac_bad) for i in range(n)]


def mix(rng: random.Random, p1: list[float], n: int = 9000) -> list[str]:
    cats = ["billing", "tech", "account"]
    return [rng.choices(cats, [0.6, 0.3, 0.1] if i < CP else p1)[0] for i in range(n)]


def run(det: Any, xs: list[Any]) -> Any:
    for x in xs:
        det.update(x)
    return det


# -- detects a real shift ----------------------------------------------------------------------

SHIFTS: list[tuple[str, Callable[[], Any], Callable[[random.Random], list[Any]], int]] = [
    ("binary 2%->8%", BinaryRateDrift, lambda r: bern(r, 0.02, 0.08), 1500),
    ("latency x1.3", LogScaleShift, lambda r: latency(r, 1.3), 400),
    ("latency x2", LogScaleShift, lambda r: latency(r, 2.0), 100),
    ("tokens x0.7", DistributionShift, lambda r: tokens(r, 0.7), 1500),
    ("tokens x1.3", DistributionShift, lambda r: tokens(r, 1.3), 1500),
    ("10% timeouts", lambda: MultivariateAnomaly(seed=1), lambda r: mv(r, 0.10), 1500),
    ("use-case mix", CategoricalMixShift, lambda r: mix(r, [0.4, 0.3, 0.3]), 1100),
]


@pytest.mark.parametrize(("label", "make", "stream", "max_delay"), SHIFTS, ids=[s[0] for s in SHIFTS])
@pytest.mark.parametrize("seed", [1, 2])
def test_detects_real_shift(
    label: str,
    make: Callable[[], Any],
    stream: Callable[[random.Random], list[Any]],
    max_delay: int,
    seed: int,
) -> None:
    det = make()
    xs = stream(random.Random(seed))
    first = None
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected and i >= CP and first is None:
            first = i
    assert first is not None, f"{label}: change not detected"
    assert first - CP <= max_delay, f"{label}: delay {first - CP}"
    assert det.n_episodes >= 1
    if not isinstance(det, MultivariateAnomaly):  # HST learns the new normal: a change alarm, not a level
        assert det.in_drift
        assert det.since is not None and det.since > CP


# -- stays quiet on stationary streams ---------------------------------------------------------

STATIONARY: list[tuple[str, Callable[[], Any], Callable[[random.Random], Any]]] = [
    ("binary", BinaryRateDrift, lambda r: r.random() < 0.02),
    ("latency", LogScaleShift, lambda r: r.lognormvariate(6.5, 0.5)),
    ("tokens", DistributionShift, lambda r: float(max(1, round(r.lognormvariate(5.0, 0.6))))),
    ("anomaly", lambda: MultivariateAnomaly(seed=1), lambda r: mv_event(r, False)),
    ("mix", CategoricalMixShift, lambda r: r.choices(["a", "b", "c"], [0.6, 0.3, 0.1])[0]),
]


@pytest.mark.parametrize(("label", "make", "draw"), STATIONARY, ids=[s[0] for s in STATIONARY])
def test_quiet_on_stationary_stream(
    label: str, make: Callable[[], Any], draw: Callable[[random.Random], Any]
) -> None:
    rng = random.Random(42)
    n = 20_000 if label in ("tokens", "anomaly") else 60_000
    det = make()
    for _ in range(n):
        det.update(draw(rng))
    # Loose bound: the bench measures the real rates (well under 10 per million).
    assert det.n_episodes <= 1, f"{label}: {det.n_episodes} false episodes in {n}"


# -- direction and recovery --------------------------------------------------------------------


def test_binary_decrease_is_improvement_not_drift() -> None:
    det = BinaryRateDrift()
    improvements = 0
    for x in bern(random.Random(3), 0.08, 0.01):
        det.update(x)
        improvements += det.improvement_detected
        assert not det.drift_detected
    assert improvements >= 1 and not det.in_drift


def test_binary_episode_recovers_when_rate_returns() -> None:
    rng = random.Random(4)
    det = BinaryRateDrift()
    rates = [0.02] * 6000 + [0.10] * 3000 + [0.02] * 12_000
    seen_drift = False
    for p in rates:
        det.update(rng.random() < p)
        seen_drift |= det.in_drift
    assert seen_drift and not det.in_drift


@pytest.mark.parametrize(("direction", "expect"), [("up", False), ("down", True), ("both", True)])
def test_log_scale_direction(direction: str, expect: bool) -> None:
    det = LogScaleShift(direction=direction)  # type: ignore[arg-type]
    run(det, latency(random.Random(5), 0.6))
    assert det.in_drift is expect


def test_log_scale_recovers_and_reference() -> None:
    rng = random.Random(6)
    det = LogScaleShift(reference=(6.5, 0.5))
    xs = [rng.lognormvariate(6.5 + (math.log(1.5) if 2000 <= i < 3000 else 0.0), 0.5) for i in range(5000)]
    states = []
    for x in xs:
        det.update(x)
        states.append(det.in_drift)
    assert any(states[2000:3000]) and not states[-1]
    assert det.reference == (6.5, 0.5)
    assert det.estimate is not None and 500 < det.estimate < 900  # geometric mean exp(6.5) ~ 665


def test_log_scale_learns_reference_in_warmup() -> None:
    det = LogScaleShift(warmup=500)
    run(det, latency(random.Random(8), 1.0, n=499))
    assert det.reference is None and det.estimate is None
    det.update(700.0)
    ref = det.reference
    assert ref is not None and abs(ref[0] - 6.5) < 0.1 and abs(ref[1] - 0.5) < 0.05


def test_event_time_recorded_in_since_time() -> None:
    det = BinaryRateDrift()
    rng = random.Random(9)
    for i, x in enumerate(bern(rng, 0.02, 0.2)):
        det.update(x, t=1000.0 + i * 0.1)
    assert det.in_drift and det.since is not None
    assert det.since_time == pytest.approx(1000.0 + (det.since - 1) * 0.1)


def test_categorical_new_category_folds_into_other() -> None:
    rng = random.Random(10)
    det = CategoricalMixShift(warmup=1000, window=500)
    for i in range(4000):
        det.update("new-use-case" if i >= 2000 and rng.random() < 0.3 else rng.choice(["a", "b"]))
    assert det.in_drift and det.reference is not None and "new-use-case" not in det.reference


def test_multivariate_fixed_bounds_and_mapping_input() -> None:
    bounds = {"latency_ms": (1, 60_000), "input_tokens": (1, 10_000), "output_tokens": (0, 5000),
              "cost_usd": (0, 1), "output_chars": (0, 20_000)}  # fmt: skip
    det = MultivariateAnomaly(bounds=bounds, seed=2)
    rng = random.Random(11)
    names = det.features
    for i in range(6000):
        ev = dict(zip(names, mv_event(rng, i >= 4000 and rng.random() < 0.15), strict=True))
        det.update(ev)
    assert det.ready and det.n_episodes >= 1


def test_script_and_length_helpers() -> None:
    assert script_of("Hello world") == "latin"
    assert script_of("Здравствуйте") == "cyrillic"
    assert script_of("안녕하세요") == "hangul"
    assert script_of("") == "none"
    assert script_of("x" * 10 + "Ж" * 100, prefix=10) == "latin"
    assert [length_bucket(v) for v in (0, 2, 4, 1023, 1024)] == ["b0", "b2", "b3", "b10", "b11"]


# -- pickle round-trip mid-stream gives identical outputs ---------------------------------------


def _trace(det: Any) -> tuple[Any, ...]:
    est = getattr(det, "estimate", None)
    return (det.drift_detected, det.in_drift, det.since, det.n_episodes, est)


PICKLE_CASES: list[tuple[str, Callable[[], Any], Callable[[random.Random], list[Any]], int]] = [
    ("binary", BinaryRateDrift, lambda r: bern(r, 0.02, 0.1), CP + 300),
    ("latency", LogScaleShift, lambda r: latency(r, 1.5), CP + 100),
    ("tokens", DistributionShift, lambda r: tokens(r, 0.6), CP + 200),
    ("anomaly", lambda: MultivariateAnomaly(seed=3), lambda r: mv(r, 0.2), CP + 100),
    ("anomaly-warmup", lambda: MultivariateAnomaly(seed=3), lambda r: mv(r, 0.2), 700),
    ("mix", CategoricalMixShift, lambda r: mix(r, [0.3, 0.3, 0.4]), CP + 700),
]


@pytest.mark.parametrize(("label", "make", "stream", "cut"), PICKLE_CASES, ids=[c[0] for c in PICKLE_CASES])
def test_pickle_round_trip_mid_stream(
    label: str, make: Callable[[], Any], stream: Callable[[random.Random], list[Any]], cut: int
) -> None:
    xs = stream(random.Random(12))
    det = run(make(), xs[:cut])
    clone = pickle.loads(pickle.dumps(det))
    a, b = [], []
    for x in xs[cut:]:
        det.update(x)
        clone.update(x)
        a.append(_trace(det))
        b.append(_trace(clone))
    assert a == b
    assert any(t[0] for t in a) or det.n_episodes >= 1


def test_bank_pickle_round_trip_and_size() -> None:
    rng = random.Random(13)
    bank = DetectorBank(seed=1)

    def ev(i: int) -> dict[str, Any]:
        out = rng.lognormvariate(5, 0.5)
        return dict(latency_ms=rng.lognormvariate(6.5, 0.4) * (1.6 if i > 5000 else 1), cost_usd=0.002,
                    input_tokens=rng.randint(100, 900), output_tokens=out, output_chars=4 * out,
                    prompt_chars=rng.randint(10, 3000), script=rng.choice(["latin", "cyrillic"]),
                    use_case=rng.choice(["a", "b", "c"]), error=rng.random() < 0.02,
                    refused=rng.random() < 0.01, fallback=False, guard_failed=False)  # fmt: skip

    evs = [ev(i) for i in range(7000)]
    for e in evs[:5200]:
        bank.update(**e)
    blob = pickle.dumps(bank, protocol=5)
    assert len(blob) < 32_000
    clone = pickle.loads(blob)
    a = [bank.update(**e) for e in evs[5200:]]
    b = [clone.update(**e) for e in evs[5200:]]
    assert a == b
    assert bank.states() == clone.states()
    assert "latency_ms" in bank.in_drift()


# -- classification ----------------------------------------------------------------------------

S = DriftState


@pytest.mark.parametrize(
    ("base", "cand", "inp", "now", "kind", "pending"),
    [
        (S(True, 100, 1000.0), S(True, 10, 1060.0), None, None, DriftKind.TRAFFIC_SHIFT, False),
        (
            S(True, 100, 1000.0),
            S(True, 10, 5000.0),
            None,
            None,
            DriftKind.TRAFFIC_SHIFT,
            False,
        ),  # baseline first
        (S(True, 100, 1200.0), S(True, 10, 1000.0), None, None, DriftKind.TRAFFIC_SHIFT, False),  # within tol
        (S(True, 100, 2000.0), S(True, 10, 1000.0), None, None, DriftKind.CANDIDATE_REGRESSION, False),
        (S(False), S(True, 10, 1000.0), None, None, DriftKind.CANDIDATE_REGRESSION, False),
        (S(False), S(True, 10, 1000.0), None, 1200.0, DriftKind.NONE, True),
        (S(False), S(True, 10, 1000.0), None, 1400.0, DriftKind.CANDIDATE_REGRESSION, False),
        (S(False), S(True, 10, 1000.0), True, None, DriftKind.CANDIDATE_REGRESSION, False),
        (S(False), S(False), S(True, 5, 900.0), None, DriftKind.INPUT_SHIFT, False),
        (S(False), S(False), True, None, DriftKind.INPUT_SHIFT, False),
        (S(True, 5, 900.0), S(False), None, None, DriftKind.NONE, False),
        (S(True, 5, 900.0), S(True, 9, 950.0), True, None, DriftKind.TRAFFIC_SHIFT, False),
        (S(False), S(False), None, None, DriftKind.NONE, False),
        # no event time: update indices with tolerance_updates (2000)
        (S(True, 5000), S(True, 4000), None, None, DriftKind.TRAFFIC_SHIFT, False),
        (S(True, 9000), S(True, 4000), None, None, DriftKind.CANDIDATE_REGRESSION, False),
    ],
)
def test_classify_cases(
    base: S, cand: S, inp: Any, now: float | None, kind: DriftKind, pending: bool
) -> None:
    v = classify(base, cand, inp, tolerance_s=300.0, now=now)
    assert v.kind is kind, v.reason
    assert v.pending is pending


def test_classify_input_flag_and_lag() -> None:
    v = classify(S(True, 1, 100.0), S(True, 1, 160.0), S(True, 1, 90.0))
    assert v.input_drift and v.lag == pytest.approx(60.0)


def test_classifier_reports_transitions_per_key() -> None:
    clf = DriftClassifier(tolerance_s=60.0)
    assert clf(S(False), S(False), key="lat").kind is DriftKind.NONE and not clf.changed
    assert clf(S(False), S(True, 1, 0.0), key="lat", now=100.0).kind is DriftKind.CANDIDATE_REGRESSION
    assert clf.changed
    clf(S(False), S(True, 1, 0.0), key="lat", now=200.0)
    assert not clf.changed
    clf(S(False), S(False), key="err")
    assert not clf.changed and clf.last == {"lat": DriftKind.CANDIDATE_REGRESSION, "err": DriftKind.NONE}


def _feed(bank: DetectorBank, rng: random.Random, factor: float, t: float) -> None:
    bank.update(t=t, latency_ms=rng.lognormvariate(6.5, 0.4) * factor)


def test_classify_banks_traffic_vs_regression() -> None:
    """Shadow-mode style: both variants see every request; compare in event time."""
    rng = random.Random(14)
    cfg = BankConfig(quiet=60.0, cooldown=600.0)
    for cand_only, expect in ((False, DriftKind.TRAFFIC_SHIFT), (True, DriftKind.CANDIDATE_REGRESSION)):
        base, cand = DetectorBank(cfg), DetectorBank(cfg)
        for i in range(4000):
            t = i * 0.1
            shifted = i >= 3000
            _feed(base, rng, 1.8 if shifted and not cand_only else 1.0, t)
            _feed(cand, rng, 1.8 if shifted else 1.0, t)
        verdicts = classify_banks(base, cand, DriftClassifier(tolerance_s=30.0), now=4000 * 0.1)
        assert verdicts["latency_ms"].kind is expect, verdicts["latency_ms"].reason
        assert verdicts["error"].kind is DriftKind.NONE


# -- alert gating ------------------------------------------------------------------------------


def test_gate_flapping_stream_gives_bounded_alerts() -> None:
    rng = random.Random(15)
    gate = EpisodeGate("x", quiet=200, cooldown=2000)
    events = []
    t_total = 200_000
    for t in range(t_total):
        # bursts of detections with random gaps, some longer than quiet
        detected = rng.random() < (0.05 if (t // 700) % 2 == 0 else 0.0)
        ev = gate.observe(detected, float(t))
        if ev:
            events.append(ev)
    alerts = [e for e in events if e.kind == "alert"]
    recoveries = [e for e in events if e.kind == "recovery"]
    assert 1 <= len(alerts) <= 1 + t_total / (200 + 2000)
    assert len(alerts) - len(recoveries) in (0, 1)
    # without gating this stream has thousands of raw detections
    assert len(alerts) < 100


def test_gate_defers_alert_past_cooldown_and_respects_in_drift() -> None:
    gate = EpisodeGate("x", quiet=10, cooldown=100)
    assert gate.observe(True, 0.0).kind == "alert"  # type: ignore[union-attr]
    assert gate.observe(False, 5.0) is None
    rec = gate.observe(False, 10.0)
    assert rec is not None and rec.kind == "recovery"
    assert gate.observe(True, 20.0) is None  # inside cool-down: deferred
    assert gate.observe(True, 100.0) is None
    ev = gate.observe(False, 110.0)
    assert ev is not None and ev.kind == "alert" and ev.episode_start == 20.0
    # a level-based detector still in drift keeps the episode open past `quiet`
    assert gate.observe(False, 500.0, in_drift=True) is None
    assert gate.observe(False, 501.0, in_drift=False).kind == "recovery"  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=3000), st.integers(1, 50), st.integers(0, 200))
def test_gate_properties(flags: list[bool], quiet: int, cooldown: int) -> None:
    gate = EpisodeGate(quiet=quiet, cooldown=cooldown)
    kinds = [e.kind for t, f in enumerate(flags) if (e := gate.observe(f, float(t)))]
    # alternates alert / recovery, starting with an alert
    assert all(k == ("alert" if i % 2 == 0 else "recovery") for i, k in enumerate(kinds))
    assert kinds.count("alert") <= 1 + len(flags) / (quiet + cooldown)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), max_size=40),
    st.sampled_from(["up", "down", "both"]),
)
def test_tracker_invariants(changes: list[tuple[float, float]], direction: str) -> None:
    tr = EpisodeTracker(direction)  # type: ignore[arg-type]
    for pre, post in changes:
        tr.tick(None)
        tr.change(pre, post, None)
        assert not (tr.drift_detected and tr.improvement_detected)
        assert tr.in_drift == (tr.since is not None)
        if tr.in_drift and direction != "both":
            assert tr.sign == (1 if direction == "up" else -1)
    clone = pickle.loads(pickle.dumps(tr))
    assert clone.state() == tr.state() and clone.n_episodes == tr.n_episodes


def test_non_finite_values_are_ignored() -> None:
    lat = LogScaleShift(reference=(6.5, 0.5))
    toks = DistributionShift(block=4)
    mva = MultivariateAnomaly(seed=1, bounds_warmup=10)
    for v in (float("nan"), float("inf"), 700.0):
        lat.update(v)
        toks.update(v)
        mva.update([v, 10.0, None, 0.001, 40.0])
    assert lat.n == 1 and toks.n == 1 and mva.n == 3
    assert lat.estimate is not None and math.isfinite(lat.estimate)

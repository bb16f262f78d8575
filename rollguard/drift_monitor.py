"""Drift monitoring in the analyze stage: detector banks per (feature, scope, arm), classified and gated.

The analyzer calls :meth:`DriftMonitor.observe` for every merged partial entry and :meth:`DriftMonitor.evaluate`
once per partial. ``evaluate`` returns :class:`DriftEvent` objects: one alert when a classified drift episode
opens (``traffic_shift``, ``candidate_regression``, ``input_shift``, ``baseline_drift``) and one recovery when it
closes. :func:`to_alert` turns an event into a wire ``Alert``; :meth:`DriftEvent.finding` gives the rollout policy
a candidate regression in the shape ``rollguard.policy.decide`` reads, so a spec's ``drift.action`` can pause.

Choices, and why (see also docs/detectors.md, "Wiring into the analyze stage"):

* **Scopes**: everyone and each single attribute value (``tier=premium``), not the full cross product: the
  cross product multiplies banks (36 segments x 3 arms x ~12 KB for the demo spec) while each cell sees only
  its share of a 4-rows-per-key sample, too little to warm a detector up. A drift confined to one cell still
  shows in its single-attribute parents, diluted.
* **Binary rates from counts, not from the sample**: escalations only exist as joined counts, and errors or
  refusals at 1 % need every event for ADWIN to see a change. The bits of one flush are rebuilt from
  (failures, trials) and spread evenly, so their order inside a flush carries no signal. Above
  ``max_bits_per_flush`` trials the flush is thinned proportionally (with a carried remainder, so the long-run
  rate is exact): the analyze stage's cost stays bounded however busy the feature is; the sequential
  canary tests still see every count.
* **Use-case mix from counts**: ingest samples at most 4 rows per (segment, arm, window), so in a busy
  feature every segment contributes the same number of rows and the sample's use-case mix is flat whatever
  the real mix is. ``requests`` per segment is the real mix; it is interleaved evenly per flush because the
  categorical test uses tumbling windows and a flush's entries arrive grouped by segment.
* **Numbers from the sample rows**: latency, cost, output tokens, the multivariate anomaly rate, prompt length
  and script come from the sampled rows (bottom-k by event-id hash: uniform within a key), sorted by event time,
  at most ``max_rows_per_flush`` per (scope, arm) so wide scopes do not dominate the cost.
* **Reference sharing** (``reference="scale"``, default): the candidate's latency/cost z-scores use the
  baseline's standard deviation (so thresholds mean the same in both arms and a 5 % canary needs no 1,000-row
  warm-up for its spread) but the candidate's own location from its first ``location_warmup`` rows. Copying
  the baseline's mean too (``"full"``, as docs/detectors.md first suggested) makes a candidate that is simply
  10 % slower from the start a permanent "drift" and would pause a rollout that its latency criterion
  accepts; a constant level difference is the canary analysis's job, a change over time is ours.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from typing import Any, Literal

from rollguard.analysis import Scope, SegmentKey, parse_segment_key, scope_dict, scope_text, scopes_of
from rollguard.contracts import Alert, Severity
from rollguard.detectors.aggregates import VariantStats
from rollguard.detectors.drift import (
    INPUT_METRICS,
    LOG_METRICS,
    OUTPUT_METRICS,
    BankConfig,
    DetectorBank,
    DriftClassifier,
    DriftKind,
    EpisodeGate,
    GateEvent,
    LogScaleShift,
)
from rollguard.spec import RolloutSpec

SHADOW_SUFFIX = "@shadow"  # same as rollguard.pipeline.SHADOW_SUFFIX (not imported: pipeline imports us)
#: Column order of a sampled row (rollguard.pipeline.SAMPLE_FIELDS).
ROW_FIELDS = ("t", "latency_ms", "cost_usd", "input_tokens", "output_tokens", "output_chars", "prompt_chars",
              "script", "error", "refused", "fallback", "guard_failed")
_ROW_INDEX = {name: i for i, name in enumerate(ROW_FIELDS)}
BASELINE_DRIFT = "baseline_drift"  # baseline-only drift older than the tolerance (no DriftKind for it)
_INPUTS = "inputs"  # metric name of a scope's merged input-drift episode
_OUTPUT_KINDS = (DriftKind.TRAFFIC_SHIFT.value, DriftKind.CANDIDATE_REGRESSION.value, BASELINE_DRIFT)

Reference = Literal["scale", "full", "own"]


@dataclass
class DriftConfig:
    """Knobs of the monitor; times are event-time seconds."""

    max_banks: int = 256  # per feature; (scope, arm) banks beyond it are not created (counted)
    #: Thinning caps per (scope, arm) and flush: the larger of the fixed cap and the per-second rate times
    #: the event time the flush covers. Live flushes (every 250 ms) get the fixed cap; a backlog or a replay,
    #: where one flush spans minutes of event time, keeps the same density per event-second.
    max_rows_per_flush: int = 16
    max_rows_per_s: float = 64.0
    max_bits_per_flush: int = 256  # trials per binary metric
    max_bits_per_s: float = 1024.0
    reference: Reference = "scale"
    location_warmup: int = 200  # candidate rows for its own log-mean ("scale" mode)
    mix_attribute: str = "use_case"  # segment attribute whose mix is watched (from counts)
    tolerance_s: float = 300.0  # classify(): how far apart onsets still count as "together"
    quiet_s: float = 120.0  # EpisodeGate: no detection for this long ends an episode
    cooldown_s: float = 900.0  # EpisodeGate: no new alert of the same kind this soon after a recovery
    #: output metrics whose candidate regressions carry the spec's action; the rest only alert. The anomaly
    #: rate is left out: HalfSpaceTrees flags a change and then re-learns, a weak reason to stop a rollout.
    act_on: tuple[str, ...] = tuple(m for m in OUTPUT_METRICS if m != "anomaly_rate")
    bank: BankConfig = field(default_factory=BankConfig)


@dataclass
class DriftCounters:
    """Limits hit and volume, for the worker's periodic report."""

    entries: int = 0
    rows: int = 0
    rows_thinned: int = 0
    bits: int = 0
    bits_thinned: int = 0
    ignored_arms: int = 0
    banks_capped: int = 0


@dataclass
class _Track:
    """One bank plus what feeding it needs: thinning remainders and the candidate's own log-mean."""

    bank: DetectorBank
    carry: dict[str, float] = field(default_factory=dict)
    loc: dict[str, tuple[int, float]] = field(default_factory=dict)  # metric -> (n, sum of log)
    ref_done: set[str] = field(default_factory=set)  # log metrics whose reference is settled


@dataclass
class _Pending:
    """What one (scope, arm) got since the last flush."""

    rows: list[list[Any]] = field(default_factory=list)
    bits: dict[str, list[int]] = field(default_factory=dict)  # metric -> [failures, trials]
    mix: dict[str, int] = field(default_factory=dict)


@dataclass
class _FeatureState:
    tracks: dict[tuple[Scope, str], _Track] = field(default_factory=dict)
    pending: dict[tuple[Scope, str], _Pending] = field(default_factory=dict)
    gates: dict[tuple[Scope, str, str, str], EpisodeGate] = field(default_factory=dict)
    classifier: DriftClassifier = field(default_factory=DriftClassifier)
    counters: DriftCounters = field(default_factory=DriftCounters)


@dataclass(frozen=True)
class DriftFinding:
    """A candidate regression in the shape ``rollguard.policy.decide`` reads from an analysis ``Finding``."""

    criterion: DriftCriterion
    scope: Scope
    event: DriftEvent

    @property
    def worse(self) -> bool:
        return True

    def evidence(self) -> dict[str, Any]:
        return self.event.evidence()


@dataclass(frozen=True)
class DriftCriterion:
    """Stands in for ``spec.Criterion`` in policy decisions (metric ``drift.<metric>``, bound = the class)."""

    metric: str
    action: str
    classification: str = DriftKind.CANDIDATE_REGRESSION.value
    bound_name: str = "classification"


@dataclass(frozen=True)
class DriftEvent:
    """A gated, classified drift episode opening (``phase="alert"``) or closing (``"recovery"``)."""

    kind: str  # traffic_shift | candidate_regression | input_shift | baseline_drift
    phase: Literal["alert", "recovery"]
    feature: str
    scope: Scope
    metric: str
    baseline: str  # baseline arm
    candidate: str  # candidate arm compared (e.g. "canary" or "canary@shadow")
    at: float  # event time of this alert / recovery
    episode_start: float
    onsets: dict[str, float | None]  # arm -> episode onset (event time) of the metric's detector
    estimates: dict[str, dict[str, Any]]  # arm -> current level, reference level, n
    reason: str
    lag_s: float | None = None
    input_drift: bool = False
    action: str | None = None  # the spec's drift action, set on candidate regressions only
    explained_by: Scope | None = None  # an earlier, overlapping regression of the same metric (no action)

    @property
    def arms(self) -> tuple[str, str]:
        return (self.baseline, self.candidate)

    @property
    def segment(self) -> dict[str, str]:
        return scope_dict(self.scope)

    def evidence(self) -> dict[str, Any]:
        """JSON-safe evidence for alerts and decisions (numbers only, no text from events)."""
        cand = self.estimates.get(self.candidate, {})
        base = self.estimates.get(self.baseline, {})
        return {
            "metric": self.metric, "classification": self.kind, "phase": self.phase,
            "scope": scope_dict(self.scope), "candidate_arm": self.candidate, "baseline_arm": self.baseline,
            "canary": cand.get("estimate"), "baseline": base.get("estimate"),
            "reference": {"canary": cand.get("reference"), "baseline": base.get("reference")},
            "n": cand.get("n"), "n_baseline": base.get("n"),
            "onset": {"canary": self.onsets.get(self.candidate), "baseline": self.onsets.get(self.baseline)},
            "lag_s": _num(self.lag_s), "episode_start": _num(self.episode_start), "at": _num(self.at),
            "input_drift": self.input_drift, "reason": self.reason,
            "explained_by": None if self.explained_by is None else scope_dict(self.explained_by),
        }

    def finding(self, action: str | None = None) -> DriftFinding:
        """This candidate regression as a policy finding (``decide`` reads criterion, scope, evidence())."""
        act = action or self.action
        if act is None:
            raise ValueError("no action: pass one or set the spec's drift action")
        return DriftFinding(DriftCriterion(f"drift.{self.metric}", act), self.scope, self)


def to_alert(feature: str, event: DriftEvent) -> Alert:
    """The wire alert for a drift event: kind ``drift``, the classification in the evidence, no raw text."""
    variant = event.candidate.removesuffix(SHADOW_SUFFIX)
    where = scope_text(event.scope)
    if event.phase == "recovery":
        title = f"drift recovered: {event.kind} of {event.metric} in {where} ({event.candidate})"
    else:
        title = f"drift: {event.kind} of {event.metric} in {where} ({event.candidate} vs {event.baseline})"
    return Alert(severity=Severity.WARN if event.phase == "alert" else Severity.INFO, kind="drift",
                 feature=feature, variant=variant, segment=event.segment, title=title, evidence=event.evidence())


class DriftMonitor:
    """Detector banks per (feature, scope, arm), fed from partial entries; classified, gated events out.

    ``spec_of(feature)`` gives the spec in force (``SpecBook.get``): it names the arms worth watching
    (baseline, candidate, shadow candidate) and the ``segment_by`` attributes that define the scopes.
    """

    def __init__(self, spec_of: Callable[[str], RolloutSpec | None] | None = None,
                 config: DriftConfig | None = None) -> None:
        self.spec_of = spec_of or (lambda _f: None)
        self.config = config or DriftConfig()
        self.features: dict[str, _FeatureState] = {}

    # ------------------------------------------------------------------ input
    def observe(self, feature: str, seg_key: SegmentKey, arm: str, stats: VariantStats,
                rows: Iterable[list[Any]] = ()) -> None:
        """Buffer one partial entry for every scope it belongs to; fed to detectors on the next flush."""
        fs = self._feature(feature)
        spec = self.spec_of(feature)
        if spec is not None and arm not in (spec.baseline, spec.candidate, spec.candidate + SHADOW_SUFFIX):
            fs.counters.ignored_arms += 1
            return
        fs.counters.entries += 1
        seg = _parse(seg_key)
        attrs = spec.segment_by if spec is not None else sorted(seg)
        rows = list(rows)
        gf = min(sum(stats.guard_failures.values()), stats.requests)
        bits = (("error", stats.errors, stats.requests), ("refused", stats.refusals, stats.requests),
                ("fallback", stats.fallbacks, stats.requests), ("guard_failed", gf, stats.requests),
                ("escalated", stats.escalations, stats.escalation_n))
        mix_attr = self.config.mix_attribute
        mix_value = seg.get(mix_attr)
        for scope in scopes_of(seg, attrs):
            if len(scope) > 1:
                continue  # the full cross product is left to the canary analysis (see module docstring)
            p = fs.pending.get((scope, arm))
            if p is None:
                p = fs.pending[(scope, arm)] = _Pending()
            p.rows.extend(rows)
            for name, k, n in bits:
                if n:
                    acc = p.bits.setdefault(name, [0, 0])
                    acc[0] += k
                    acc[1] += n
            if mix_value is not None and stats.requests and not (scope and scope[0][0] == mix_attr):
                p.mix[mix_value] = p.mix.get(mix_value, 0) + stats.requests

    def flush(self, feature: str, now: float) -> None:
        """Feed everything buffered for ``feature`` to its banks (``evaluate`` calls this first)."""
        fs = self.features.get(feature)
        if fs is None or not fs.pending:
            return
        spec = self.spec_of(feature)
        pending, fs.pending = fs.pending, {}
        cfg = self.config
        c = fs.counters
        times = [r[0] for p in pending.values() for r in p.rows if r and r[0] is not None]
        span = max(times) - min(times) if times else 0.0
        max_rows = max(cfg.max_rows_per_flush, math.ceil(span * cfg.max_rows_per_s))
        max_bits = max(cfg.max_bits_per_flush, math.ceil(span * cfg.max_bits_per_s))
        for (scope, arm), p in pending.items():
            tr = self._track(fs, scope, arm)
            if tr is None:
                continue
            det = tr.bank.detectors
            if p.rows:
                rows = sorted(p.rows, key=lambda r: r[0] if r and r[0] is not None else now)
                c.rows += len(rows)
                if len(rows) > max_rows:
                    c.rows_thinned += len(rows) - max_rows
                    rows = _spread(rows, max_rows)
                own_loc = spec is not None and arm != spec.baseline and cfg.reference == "scale"
                for r in rows:
                    self._feed_row(tr, r, now, own_loc)
            for name, (k, n) in p.bits.items():
                c.bits += n
                counts = _thin({"1": k, "0": n - k}, max_bits, tr.carry, name)
                c.bits_thinned += n - sum(counts.values())
                d = det[name]
                for v in _interleave(counts):
                    d.update(v == "1", now)
            if p.mix:
                counts = _thin(p.mix, max_bits, tr.carry, "mix")
                d = det["use_case"]
                for v in _interleave(counts):
                    d.update(v, now)
        if spec is not None and cfg.reference != "own":
            self._share_references(fs, spec)

    def _feed_row(self, tr: _Track, r: list[Any], now: float, own_loc: bool) -> None:
        ix = _ROW_INDEX

        def num(name: str) -> float | None:
            v = r[ix[name]] if len(r) > ix[name] else None
            return None if v is None else float(v)

        t = num("t")
        lat, cost = num("latency_ms"), num("cost_usd")
        if own_loc and len(tr.ref_done) < len(LOG_METRICS):
            for name, v in (("latency_ms", lat), ("cost_usd", cost)):
                if v is not None and v > 0:
                    n, s = tr.loc.get(name, (0, 0.0))
                    if n < self.config.location_warmup:
                        tr.loc[name] = (n + 1, s + math.log(v))
        script = r[ix["script"]] if len(r) > ix["script"] else None
        tr.bank.update(t=now if t is None else t, latency_ms=lat, cost_usd=cost, input_tokens=num("input_tokens"),
                       output_tokens=num("output_tokens"), output_chars=num("output_chars"),
                       prompt_chars=num("prompt_chars"), script=None if script is None else str(script))

    def _share_references(self, fs: _FeatureState, spec: RolloutSpec) -> None:
        """Give candidate banks the baseline's log-scale reference (see ``DriftConfig.reference``)."""
        cfg = self.config
        for (scope, arm), tr in fs.tracks.items():
            if arm == spec.baseline or len(tr.ref_done) == len(LOG_METRICS):
                continue
            base = fs.tracks.get((scope, spec.baseline))
            if base is None:
                continue
            for name in LOG_METRICS:
                if name in tr.ref_done:
                    continue
                bdet, cdet = base.bank.detectors[name], tr.bank.detectors[name]
                assert isinstance(bdet, LogScaleShift) and isinstance(cdet, LogScaleShift)
                ref = bdet.reference
                if cdet.reference is not None or ref is None:
                    if cdet.reference is not None:  # its own warm-up finished first: keep it
                        tr.ref_done.add(name)
                    continue
                if cfg.reference == "full":
                    cdet.set_reference(*ref)
                    tr.ref_done.add(name)
                    continue
                n, s = tr.loc.get(name, (0, 0.0))
                if n >= cfg.location_warmup:
                    cdet.set_reference(s / n, ref[1])
                    tr.ref_done.add(name)
                    tr.loc.pop(name, None)

    # ------------------------------------------------------------------ decisions
    def evaluate(self, spec: RolloutSpec, now: float, *, action: str | None = None,
                 tolerance_s: float | None = None) -> list[DriftEvent]:
        """Flush, classify every (scope, metric) baseline vs candidate(s), and return gated events.

        ``action`` is the spec's drift action (e.g. ``"pause"``); it is attached to candidate regressions so
        the caller can turn them into policy decisions with :meth:`DriftEvent.finding`.
        """
        feature = spec.feature
        self.flush(feature, now)
        fs = self.features.get(feature)
        if fs is None:
            return []
        tol = self.config.tolerance_s if tolerance_s is None else tolerance_s
        fs.classifier.tolerance_s = tol
        out: list[DriftEvent] = []
        scopes = sorted({scope for scope, _arm in fs.tracks})
        for scope in scopes:
            base = fs.tracks.get((scope, spec.baseline))
            if base is None:
                continue
            for cand_arm in (spec.candidate, spec.candidate + SHADOW_SUFFIX):
                cand = fs.tracks.get((scope, cand_arm))
                if cand is not None:
                    out.extend(self._evaluate_pair(fs, feature, scope, spec.baseline, base, cand_arm, cand, now,
                                                   tol, action))
        return out

    def _evaluate_pair(self, fs: _FeatureState, feature: str, scope: Scope, base_arm: str, base: _Track,
                       cand_arm: str, cand: _Track, now: float, tol: float,
                       action: str | None) -> list[DriftEvent]:
        bd, cd = base.bank.detectors, cand.bank.detectors
        inp_b, inp_c = base.bank.input_state(), cand.bank.input_state()
        inp = inp_b if inp_b.in_drift else inp_c
        out: list[DriftEvent] = []
        outputs_drifted = False
        for m in OUTPUT_METRICS:
            v = fs.classifier(bd[m], cd[m], inp, key=f"{scope_text(scope)}|{cand_arm}|{m}", now=now)
            kind = v.kind.value
            if v.kind == DriftKind.NONE and bd[m].in_drift and not v.pending:
                since = bd[m].since_time
                kind = BASELINE_DRIFT if since is not None and now - since > tol else DriftKind.NONE.value
            if kind in (DriftKind.TRAFFIC_SHIFT.value, DriftKind.CANDIDATE_REGRESSION.value):
                outputs_drifted = True
            for k in _OUTPUT_KINDS:
                ev = self._gate(fs, scope, cand_arm, m, k, kind == k, now)
                if ev is None:
                    continue
                act, why = None, None
                if k == DriftKind.CANDIDATE_REGRESSION.value and ev.kind == "alert":
                    why = self._explained(fs, scope, cand_arm, m, ev.episode_start)
                    act = action if why is None and m in self.config.act_on else None
                e = self._event(feature, scope, m, k, ev, base_arm, bd[m], cand_arm, cd[m], v.reason, v.lag,
                                v.input_drift, act)
                out.append(e if why is None else _replace(e, explained_by=why))
        # Input-only drift is a property of the scope, not of one output metric.
        shifted = inp.in_drift and not outputs_drifted
        ev = self._gate(fs, scope, cand_arm, _INPUTS, DriftKind.INPUT_SHIFT.value, shifted, now)
        if ev is not None:
            names = [k for k in INPUT_METRICS if bd[k].in_drift or cd[k].in_drift]
            metric = ",".join(names) or _INPUTS
            first = names[0] if names else INPUT_METRICS[-1]
            out.append(self._event(feature, scope, metric, DriftKind.INPUT_SHIFT.value, ev, base_arm, bd[first],
                                   cand_arm, cd[first], "inputs drifted, outputs did not", None, True, None))
        return out

    @staticmethod
    def _explained(fs: _FeatureState, scope: Scope, arm: str, metric: str, start: float) -> Scope | None:
        """An open drift episode of ``metric`` in an overlapping scope that began earlier, if any.

        A premium-only regression also moves ``geo=us`` (premium traffic is part of it), later and weaker;
        the earliest overlapping episode is taken as the cause, as the canary analysis attributes to the
        smallest explaining set. If that episode is a traffic shift (or baseline drift), the later, diluted
        candidate-only detection is the same shift seen through a thinner sample, and must not act. Scopes of
        the same attribute (``tier=pro`` vs ``tier=premium``) are disjoint and never explain each other.
        """
        best: tuple[float, int, Scope] | None = None
        for (sc, a, m, k), g in fs.gates.items():
            if (a, m) != (arm, metric) or k not in _OUTPUT_KINDS or sc == scope or not g.active:
                continue
            if sc and scope and sc[0][0] == scope[0][0]:
                continue
            if g.start < start or (g.start == start and len(sc) > len(scope)):
                cand = (g.start, -len(sc), sc)
                best = cand if best is None or cand < best else best
        return None if best is None else best[2]

    def _gate(self, fs: _FeatureState, scope: Scope, arm: str, metric: str, kind: str, active: bool,
              now: float) -> GateEvent | None:
        key = (scope, arm, metric, kind)
        g = fs.gates.get(key)
        if g is None:
            if not active:
                return None
            g = fs.gates[key] = EpisodeGate(f"{kind}:{metric}", self.config.quiet_s, self.config.cooldown_s)
        return g.observe(active, now, active)

    @staticmethod
    def _event(feature: str, scope: Scope, metric: str, kind: str, ev: GateEvent, base_arm: str, bdet: Any,
               cand_arm: str, cdet: Any, reason: str, lag: float | None, input_drift: bool,
               action: str | None) -> DriftEvent:
        return DriftEvent(
            kind=kind, phase=ev.kind, feature=feature, scope=scope, metric=metric, baseline=base_arm,
            candidate=cand_arm, at=ev.at, episode_start=ev.episode_start,
            onsets={base_arm: _num(bdet.since_time), cand_arm: _num(cdet.since_time)},
            estimates={base_arm: _describe(bdet), cand_arm: _describe(cdet)},
            reason=reason, lag_s=lag, input_drift=input_drift, action=action,
        )

    def holding(self, feature: str, scope: Scope | Mapping[str, str]) -> bool:
        """Inputs drifted in ``scope`` or in a coarser watched scope: canary decisions there should wait.

        Any arm counts (the baseline, with most traffic, usually sees a population shift first); a full
        cross-product scope is covered through its single-attribute parents and everyone.
        """
        fs = self.features.get(feature)
        if fs is None:
            return False
        pairs = tuple(sorted(scope.items())) if isinstance(scope, Mapping) else tuple(scope)
        watched = [(), *(((a, v),) for a, v in pairs)]
        return any(sc in watched and tr.bank.input_state().in_drift for (sc, _arm), tr in fs.tracks.items())

    # ------------------------------------------------------------------ state
    def to_bytes(self, feature: str | None = None) -> bytes:
        """Pickle of one feature's state (or all): banks, buffers, classifier, gates, counters."""
        if feature is None:
            body = self.features
        else:
            body = {feature: self.features[feature]} if feature in self.features else {}
        return pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, raw: bytes | None) -> None:
        """Replace the state of the features in ``raw`` (from :meth:`to_bytes`). Trusted input only."""
        if raw:
            self.features.update(pickle.loads(raw))  # our own checkpoint, from our own table

    @classmethod
    def from_bytes(cls, raw: bytes, spec_of: Callable[[str], RolloutSpec | None] | None = None,
                   config: DriftConfig | None = None) -> DriftMonitor:
        m = cls(spec_of, config)
        m.restore(raw)
        return m

    def counters(self, feature: str) -> DriftCounters:
        return self._feature(feature).counters

    def footprint(self, feature: str) -> dict[str, int]:
        """Pickled bytes per ``scope|arm`` bank: what each costs in the checkpoint."""
        fs = self.features.get(feature)
        if fs is None:
            return {}
        return {f"{scope_text(sc)}|{arm}": len(pickle.dumps(tr, protocol=pickle.HIGHEST_PROTOCOL))
                for (sc, arm), tr in fs.tracks.items()}

    # ------------------------------------------------------------------ internals
    def _feature(self, feature: str) -> _FeatureState:
        fs = self.features.get(feature)
        if fs is None:
            fs = self.features[feature] = _FeatureState()
            fs.classifier = DriftClassifier(self.config.tolerance_s)
        return fs

    def _track(self, fs: _FeatureState, scope: Scope, arm: str) -> _Track | None:
        tr = fs.tracks.get((scope, arm))
        if tr is None:
            if len(fs.tracks) >= self.config.max_banks:
                fs.counters.banks_capped += 1
                return None
            tr = fs.tracks[(scope, arm)] = _Track(DetectorBank(self.config.bank, seed=len(fs.tracks)))
        return tr


def _parse(seg_key: SegmentKey) -> dict[str, str]:
    """Segment attributes; the ingest overflow bucket (no ``=``) belongs only to the overall scope."""
    return parse_segment_key(seg_key) if "=" in seg_key else {}


def _spread(items: list[Any], k: int) -> list[Any]:
    """``k`` items evenly spaced over ``items`` (already in time order): a thinning that keeps the span."""
    n = len(items)
    return [items[(2 * j + 1) * n // (2 * k)] for j in range(k)]


def _thin(counts: Mapping[str, int], cap: int, carry: dict[str, float], tag: str) -> dict[str, int]:
    """Scale ``counts`` down to about ``cap`` in total, carrying fractions so long-run shares are exact."""
    n = sum(counts.values())
    if n <= cap:
        return dict(counts)
    f = cap / n
    out = {}
    for k, c in counts.items():
        key = f"{tag}:{k}"
        x = c * f + carry.get(key, 0.0)
        out[k] = int(x)
        carry[key] = x - out[k]
    return out


def _interleave(counts: Mapping[str, int]) -> list[str]:
    """Categories in an even order (each at positions (j + 1/2) / count): no clumps inside a flush."""
    items = [((j + 0.5) / c, i, k) for i, (k, c) in enumerate(sorted(counts.items())) if c > 0 for j in range(c)]
    items.sort()
    return [k for _, _, k in items]


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _describe(det: Any) -> dict[str, Any]:
    """A detector's current level and pre-change (or warm-up) reference, in data units where possible."""
    out: dict[str, Any] = {"n": int(det.n), "in_drift": bool(det.in_drift)}
    est = getattr(det, "estimate", None)
    ref = getattr(det, "reference", None)
    if isinstance(det, LogScaleShift):
        out["estimate"] = _num(est)
        out["reference"] = _num(math.exp(ref[0])) if ref is not None else None
    elif isinstance(ref, dict):  # categorical mix: divergence and significance instead of a level
        out["estimate"] = _num(getattr(det, "js", None))
        out["p_value"] = _num(getattr(det, "p_value", None))
        out["reference"] = None
    else:
        out["estimate"] = _num(est)
        out["reference"] = _num(ref) if not isinstance(ref, tuple) else None
    return out


__all__ = [
    "BASELINE_DRIFT",
    "DriftConfig",
    "DriftCounters",
    "DriftCriterion",
    "DriftEvent",
    "DriftFinding",
    "DriftMonitor",
    "to_alert",
]

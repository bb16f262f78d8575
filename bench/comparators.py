"""Honest baselines over the same event stream rollguard sees: a fixed-threshold interval policy (Argo Rollouts /
Flagger style) and a fixed-window Mann-Whitney judge (Kayenta / NetflixACAJudge style).

Both read an ``EventFrame`` (per-response and per-outcome columns in stream order, guard findings from the same
default guard set rollguard uses) and return ``Action`` records positioned at the response index where the
decision would have been taken. Neither looks at segments: every action is scoped to everyone. Definitions,
defaults and their sources: docs/scenarios.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, norm

from rollguard.detectors.shadow import agreement
from rollguard.guards import GuardItem, GuardSet, build_guard_set
from rollguard.spec import RolloutSpec


@dataclass(frozen=True)
class Action:
    """A pause/rollback a comparator would have issued, at response index ``at`` (always overall scope)."""

    action: str
    at: int
    metric: str
    scope: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Series:
    """One metric's per-event values in stream order: ``pos`` response index, ``cand`` canary side."""

    pos: np.ndarray
    cand: np.ndarray
    val: np.ndarray


@dataclass(frozen=True)
class MetricDef:
    """A comparator metric: ``stat`` over values (mean | p95 | sum), bad direction and tolerance from the spec."""

    name: str
    stat: str
    direction: str  # up | down
    tol: float  # additive (rates, ms) or a ratio (kind == "ratio")
    kind: str = "add"  # add | ratio | count
    critical: bool = False
    source: str = ""  # EventFrame series (default: name)

    @property
    def key(self) -> str:
        return self.source or self.name


class EventFrame:
    """Columns the comparators need, extracted once per run from the contract events."""

    def __init__(self, series: dict[str, Series], n_responses: int) -> None:
        self.series = series
        self.n = n_responses

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]], candidate: str = "canary",
                    guards: GuardSet | None = None) -> EventFrame:
        guards = guards or build_guard_set(None)
        cols: dict[str, tuple[list[int], list[bool], list[float]]] = {}
        resp_arm: dict[str, bool] = {}
        live_out: dict[str, str] = {}
        pos = -1

        def put(name: str, cand: bool, v: float) -> None:
            c = cols.setdefault(name, ([], [], []))
            c[0].append(pos)
            c[1].append(cand)
            c[2].append(v)

        for ev in events:
            if ev["schema"].startswith("rollguard.outcome"):
                cand = resp_arm.get(ev["request_id"])
                if cand is None:
                    continue
                if ev.get("escalated") is not None:
                    put("escalation_rate", cand, float(ev["escalated"]))
                if ev.get("task_success") is not None:
                    put("task_success_rate", cand, float(ev["task_success"]))
                continue
            pos += 1
            shadow = ev.get("mode") == "shadow"
            cand = shadow or ev["variant"] == candidate
            if not shadow:
                resp_arm[ev["request_id"]] = cand
            usage = ev.get("usage") or {}
            findings = guards.check(GuardItem(
                output=ev["output"], input=ev["input"], latency_ms=ev.get("latency_ms"),
                input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
                cost_usd=ev.get("cost_usd"), error=ev.get("error"), fallback=ev.get("fallback", False),
                refused=ev.get("refused")))
            names = {f.guard for f in findings}
            put("error_rate", cand, float(ev.get("error") is not None))
            put("refusal_rate", cand, float(ev.get("refused") is True or "refusal" in names))
            put("safety_failures", cand, float(any(f.severity == "critical" for f in findings)))
            put("guard.pii.rate", cand, float("pii" in names))
            put("guard_failure_rate", cand, float(any(f.severity != "info" for f in findings)))
            if ev.get("latency_ms") is not None:
                put("latency_p95_ms", cand, float(ev["latency_ms"]))
            if ev.get("cost_usd") is not None:
                put("cost_per_request", cand, float(ev["cost_usd"]))
            if shadow:
                live = live_out.pop(ev["request_id"], None)
                if live is not None:
                    put("shadow_disagreement_rate", True, float(not agreement(ev["output"], live).similar))
            elif ev.get("mode", "live") == "live":
                live_out[ev["request_id"]] = ev["output"]
                put("shadow_disagreement_rate", False, 0.0)  # live side: the pairing's reference, never differs
        series = {k: Series(np.asarray(p, dtype=np.int64), np.asarray(c, dtype=bool), np.asarray(v, dtype=float))
                  for k, (p, c, v) in cols.items()}
        return cls(series, pos + 1)


def metrics_for(spec: RolloutSpec) -> list[MetricDef]:
    """The spec's criteria as comparator metrics (same tolerances; ``rollback`` criteria are Kayenta-critical)."""
    out: list[MetricDef] = []
    for c in spec.criteria:
        crit = c.action == "rollback"
        m = c.metric
        if m in ("escalation_rate", "error_rate", "refusal_rate", "shadow_disagreement_rate") or (
                m.startswith("guard.") and m.endswith(".rate")):
            out.append(MetricDef(m, "mean", "up", c.max_increase or 0.0, critical=crit))
        elif m == "shadow_guard_failure_rate":
            out.append(MetricDef(m, "mean", "up", c.max_increase or 0.0, critical=crit,
                                 source="guard_failure_rate"))
        elif m == "task_success_rate":
            out.append(MetricDef(m, "mean", "down", c.non_inferiority_margin or 0.0, critical=crit))
        elif m == "latency_p95_ms":
            out.append(MetricDef(m, "p95", "up", c.max_ratio or 1.0, "ratio", critical=crit))
        elif m == "shadow_latency_delta_ms":
            out.append(MetricDef(m, "mean", "up", c.max_increase or 0.0, critical=crit, source="latency_p95_ms"))
        elif m == "cost_per_request":
            out.append(MetricDef(m, "mean", "up", c.max_ratio or 1.0, "ratio", critical=crit))
    if spec.on_critical_guard is not None:
        out.append(MetricDef("safety_failures", "sum", "up", 0.0, "count", critical=True))
    return out


def _stat(values: np.ndarray, stat: str) -> float:
    if values.size == 0:
        return math.nan
    if stat == "mean":
        return float(values.mean())
    if stat == "p95":
        return float(np.percentile(values, 95))
    return float(values.sum())


# ------------------------------------------------------------------------------------------ threshold


@dataclass
class ThresholdPolicy:
    """Argo Rollouts / Flagger style: every ``interval`` responses, check each metric of the CANARY alone
    against a fixed threshold; a metric whose failed measurements exceed ``failure_limit`` aborts (rollback).

    Thresholds are written "the way a team would", before the rollout: the metric's level on the stable
    version (here: the baseline arm over the first ``calibration`` responses, standing in for last week's
    dashboard) plus the spec's tolerance, widened to ``z`` standard errors of one interval's canary sample
    when the tolerance is smaller than that noise (otherwise a healthy canary fails checks every few intervals).
    Counts (leaked secrets) use ``max 0`` per interval and ``failureLimit 0`` (abort on the first leak).
    """

    interval: int = 1000
    failure_limit: int = 3  # Argo docs' background-analysis example; Argo's default is 0
    calibration: int = 3000
    z: float = 3.09  # headroom: a healthy canary fails one check ~0.1 % of the time
    name: str = "threshold"

    def thresholds(self, frame: EventFrame, metrics: list[MetricDef]) -> dict[str, float]:
        out: dict[str, float] = {}
        per_interval = self.calibration / self.interval
        for m in metrics:
            s = frame.series.get(m.key)
            if s is None:
                continue
            if m.kind == "count":
                out[m.name] = 0.0
                continue
            hist = s.val[(~s.cand) & (s.pos < self.calibration)]
            level = _stat(hist, m.stat)
            if not math.isfinite(level):
                continue
            n_c = max(1.0, float(((s.cand) & (s.pos < self.calibration)).sum()) / per_interval)
            sd = float(hist.std()) / math.sqrt(n_c) if hist.size > 1 else 0.0
            if m.kind == "add":
                width = max(m.tol, self.z * sd)
                out[m.name] = level + width if m.direction == "up" else level - width
            else:  # ratio: the spec's max_ratio, or the noise of one interval's statistic if larger
                rel = self.z * sd / level if level > 0 else 0.0
                out[m.name] = level * max(m.tol, 1.0 + rel * (2.0 if m.stat == "p95" else 1.0))
        return out

    def run(self, frame: EventFrame, metrics: list[MetricDef], horizon: int | None = None) -> list[Action]:
        """All aborts (at most one: the run stops at the first)."""
        limits = self.thresholds(frame, metrics)
        failures = dict.fromkeys(limits, 0)
        n = horizon or frame.n
        keys = {m.name: m.key for m in metrics if m.name in limits}
        idx = {k: np.searchsorted(frame.series[keys[k]].pos, np.arange(0, n + self.interval, self.interval))
               for k in limits}
        for k_int in range(n // self.interval):
            end = (k_int + 1) * self.interval - 1
            for m in metrics:
                if m.name not in limits:
                    continue
                s = frame.series[m.key]
                lo, hi = idx[m.name][k_int], idx[m.name][k_int + 1]
                v = s.val[lo:hi][s.cand[lo:hi]]
                x = _stat(v, m.stat)
                if not math.isfinite(x):
                    continue  # no data this interval: neither success nor failure
                bad = x > limits[m.name] if m.direction == "up" else x < limits[m.name]
                if bad:
                    failures[m.name] += 1
                    if failures[m.name] > (0 if m.kind == "count" else self.failure_limit):
                        return [Action("rollback", end, m.name, detail={
                            "value": x, "threshold": limits[m.name], "failures": failures[m.name]})]
        return []


# ------------------------------------------------------------------------------------------ Kayenta


def hodges_lehmann_ci(x: np.ndarray, y: np.ndarray, conf: float) -> tuple[float, float, float]:
    """Hodges-Lehmann shift estimate of x - y and its Mann-Whitney (Moses) confidence interval."""
    d = np.sort((x[:, None] - y[None, :]).ravel())
    m, n = x.size, y.size
    est = float(np.median(d))
    z = norm.ppf(1 - (1 - conf) / 2)
    c = math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12))
    c = min(max(c, 0), d.size - 1)
    return est, float(d[c]), float(d[d.size - 1 - c])


def _iqr_keep(v: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """Kayenta's IQRDetector(factor=3, reduceSensitivity=true): drop values outside max(IQR fence, p1/p99)."""
    if v.size < 4:
        return v
    p1, p25, p75, p99 = np.percentile(v, [1, 25, 75, 99])
    iqr = p75 - p25
    lo, hi = min(p1, p25 - factor * iqr), max(p99, p75 + factor * iqr)
    return v[(v >= lo) & (v <= hi)]


@dataclass
class KayentaJudge:
    """Kayenta / NetflixACAJudge style: per metric, a time series of per-``bucket`` values for canary and
    baseline; every ``interval`` responses a judgment over the data since the start (growing lookback):
    Mann-Whitney at ``confidence`` 0.98 with ``tolerance`` 0.25 (High if the CI's lower end exceeds 25 % of the
    Hodges-Lehmann estimate and the mean ratio >= 1), score = % of metrics classified Pass. Score below
    ``marginal`` (75) fails at once; the last judgment must reach ``pass_score`` (95); a failed critical metric
    zeroes the score.
    """

    bucket: int = 250
    interval: int = 2000
    confidence: float = 0.98
    tolerance: float = 0.25
    marginal: float = 75.0
    pass_score: float = 95.0
    name: str = "kayenta"

    def buckets(self, s: Series, stat: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        edges = np.searchsorted(s.pos, np.arange(0, n + self.bucket, self.bucket))
        out_c, out_b = [], []
        for b in range(n // self.bucket):
            lo, hi = edges[b], edges[b + 1]
            c = s.cand[lo:hi]
            out_c.append(_stat(s.val[lo:hi][c], stat))
            out_b.append(_stat(s.val[lo:hi][~c], stat))
        return np.asarray(out_c), np.asarray(out_b)

    def classify(self, m: MetricDef, canary: np.ndarray, baseline: np.ndarray) -> tuple[str, dict[str, float]]:
        x, y = canary[np.isfinite(canary)], baseline[np.isfinite(baseline)]
        if x.size == 0 or y.size == 0:
            return "Pass", {}  # nanStrategy "none": no data passes
        x, y = _iqr_keep(x), _iqr_keep(y)
        if np.array_equal(np.sort(x), np.sort(y)) or np.unique(np.concatenate([x, y])).size == 1:
            return "Pass", {}
        est, lo, hi = hodges_lehmann_ci(x, y, self.confidence)
        bound = self.tolerance * abs(est)
        ratio = float(x.mean() / y.mean()) if y.mean() != 0 else 1.0
        p = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
        info = {"estimate": est, "lower": lo, "upper": hi, "ratio": ratio, "p": p}
        if m.direction == "up" and lo > bound and ratio >= 1.0:
            return "High", info
        if m.direction == "down" and hi < -bound and ratio <= 1.0:
            return "Low", info
        return "Pass", info

    def run(self, frame: EventFrame, metrics: list[MetricDef], horizon: int | None = None) -> list[Action]:
        n = horizon or frame.n
        usable = [m for m in metrics if m.key in frame.series]
        series = {m.name: self.buckets(frame.series[m.key], m.stat, n) for m in usable}
        judgments = list(range(self.interval, n + 1, self.interval))
        if not judgments or judgments[-1] != n - n % self.bucket:
            judgments.append(n - n % self.bucket)
        for j, upto in enumerate(judgments):
            k = upto // self.bucket
            failed: list[tuple[str, dict[str, float]]] = []
            critical = False
            for m in usable:
                c, b = series[m.name]
                label, info = self.classify(m, c[:k], b[:k])
                if label != "Pass":
                    failed.append((m.name, info))
                    critical |= m.critical
            score = 0.0 if critical else 100.0 * (len(usable) - len(failed)) / max(1, len(usable))
            last = j == len(judgments) - 1
            if score < self.marginal or (last and score < self.pass_score):
                return [Action("rollback", upto - 1, failed[0][0] if failed else "score",
                               detail={"score": score, "failed": [f for f, _ in failed], "final": last})]
        return []

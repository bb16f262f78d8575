"""Per-feature judgement: build segment views, test each criterion, attribute a regression to scopes.

Views: the overall population, each single segment attribute (``tier=premium``), and the full cross product
of ``segment_by``. Every criterion is tested on each view with an always-valid sequential test at
``alpha / m`` (Bonferroni over the m views tested: valid for anytime-valid tests, unlike Holm on p-values
that are re-computed at every peek). A regression is then attributed to the smallest set of scopes that
explains it: strongest evidence first, each further scope re-tested with the traffic already covered by the
chosen scopes removed, so a premium-only regression does not also roll back ``geo=eu`` or everyone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollguard.detectors import sequential, shadow
from rollguard.detectors.aggregates import VariantStats
from rollguard.detectors.srm import srm as srm_test
from rollguard.spec import (
    COUNT_METRICS,
    OUTCOME_METRICS,
    RATE_DOWN_METRICS,
    RATE_UP_METRICS,
    SHADOW_METRICS,
    Criterion,
)

SegmentKey = str  # canonical "tier=premium|geo=eu" over the spec's segment_by attributes (may be "")
Scope = tuple[tuple[str, str], ...]  # sorted (attribute, value) pairs; () = everyone


def segment_key(segment: Mapping[str, str], attrs: Iterable[str]) -> SegmentKey:
    return "|".join(f"{a}={segment.get(a, '-')}" for a in attrs)


def parse_segment_key(key: SegmentKey) -> dict[str, str]:
    if not key:
        return {}
    # parts without "=" (the "_overflow" bucket past a feature's segment cap) belong to no attribute value:
    # that traffic counts in the overall view only
    return dict(part.split("=", 1) for part in key.split("|") if "=" in part)


def scope_dict(scope: Scope) -> dict[str, str]:
    return dict(scope)


def scope_text(scope: Scope) -> str:
    return ",".join(f"{k}={v}" for k, v in scope) or "all"


def in_scope(segment: Mapping[str, str], scope: Scope) -> bool:
    return all(segment.get(k) == v for k, v in scope)


@dataclass(frozen=True, slots=True)
class Finding:
    """One criterion's verdict on one scope; ``verdict`` is the statistics library's result."""

    criterion: Criterion
    scope: Scope
    verdict: Any  # detectors.sequential.Verdict

    @property
    def worse(self) -> bool:
        return bool(self.verdict.outcome == "worse")

    def evidence(self) -> dict[str, Any]:
        v = self.verdict
        out: dict[str, Any] = {
            "metric": self.criterion.metric,
            "bound": {self.criterion.bound_name: getattr(self.criterion, self.criterion.bound_name)},
            "canary": _num(v.estimate_candidate),
            "baseline": _num(v.estimate_baseline),
            "effect": _num(v.effect),
            "interval": [_num(v.lower), _num(v.upper)],
            "n": int(v.n_candidate),
            "n_baseline": int(v.n_baseline),
            "e_value": _num(v.e_value),
            "p": _num(v.p_value),
            "outcome": v.outcome,
        }
        return out


def _num(x: float) -> float | None:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), 6)


def scopes_of(segment: Mapping[str, str], attrs: list[str]) -> list[Scope]:
    """The views one segment's traffic belongs to: everyone, each of its attribute values, itself."""
    out: list[Scope] = [()]
    for a in attrs:
        if a in segment:
            out.append(((a, segment[a]),))
    full = tuple(sorted(segment.items()))
    if len(attrs) > 1 and len(full) > 1:
        out.append(full)
    return out


def merged(stats: Mapping[SegmentKey, VariantStats], scope: Scope,
           exclude: Iterable[Scope] = ()) -> VariantStats:
    """Stats of one arm over every segment in ``scope`` and in none of ``exclude``."""
    ex = list(exclude)
    out = VariantStats()
    for key, s in stats.items():
        seg = parse_segment_key(key)
        if in_scope(seg, scope) and not any(in_scope(seg, e) for e in ex):
            out.merge(s)
    return out


ExpectedWeight = float | Callable[[Scope], float | None] | None

#: Share of each criterion's alpha spent on recent epochs (the rest goes to the whole-stage test).
RECENT_SHARE = 0.25


def stage_alpha(alpha: float, *, recent: bool) -> float:
    """The whole-stage test's share of a criterion's alpha."""
    return alpha * (1 - RECENT_SHARE) if recent else alpha


def epoch_alpha(alpha: float, epoch: int) -> float:
    """Alpha for recent epoch ``epoch`` (1, 2, ...): ``RECENT_SHARE * alpha * 6 / (pi^2 k^2)`` sums to
    ``RECENT_SHARE * alpha`` over all epochs, so the whole-stage test plus every epoch's test together keep the
    criterion's false-alarm probability at most ``alpha`` however long the stage runs (each epoch's test is
    itself anytime-valid on its own data, which no other epoch shares).

    >>> round(sum(epoch_alpha(0.05, k) for k in range(1, 100_000)) / 0.05, 4)
    0.25
    """
    return alpha * RECENT_SHARE * 6 / (math.pi ** 2 * epoch ** 2)


def with_alpha(criteria: Iterable[Criterion], spec_alpha: float, scale: Callable[[float], float]) -> list[Criterion]:
    """Criteria whose statistical tests run at ``scale(alpha)`` (hard limits and the SRM check unchanged)."""
    return [c if c.metric in COUNT_METRICS or c.metric == "srm" else
            c.model_copy(update={"alpha": scale(c.alpha or spec_alpha)}) for c in criteria]


def test_criterion(c: Criterion, cand: VariantStats, base: VariantStats, alpha: float,
                   expected_weight: float | None = None) -> Any:
    """Run the criterion's sequential test on one view; returns a ``sequential.Verdict``. ``alpha`` is the
    level for this view, already derived from the criterion's own alpha by the caller (``judge`` divides it
    across views), so it is used as given."""
    m = c.metric
    a = alpha
    if m in COUNT_METRICS:
        return count_exceeds(cand.safety_failures, cand.requests, base.requests, max_count=c.max_count or 0,
                             metric=m)
    if m == "srm":
        w = expected_weight
        return srm_verdict(base.requests, cand.requests, candidate_weight=w, alpha=c.alpha or 0.001,
                           min_n=c.min_samples)
    if m in SHADOW_METRICS:
        return shadow_criterion(c, cand, a)
    if m in RATE_UP_METRICS or m.startswith("guard."):
        xc, nc = cand.rate(m)
        xb, nb = base.rate(m)
        return sequential.rate_increase(xc, nc, xb, nb, max_increase=c.max_increase or 0.0, alpha=a,
                                        min_n=c.min_samples, metric=m)
    if m in RATE_DOWN_METRICS:
        xc, nc = cand.rate(m)
        xb, nb = base.rate(m)
        return sequential.rate_non_inferiority(xc, nc, xb, nb, margin=c.non_inferiority_margin or 0.0,
                                               alpha=a, min_n=c.min_samples, metric=m)
    if m == "cost_per_request":
        mc, mb = cand.cost, base.cost
        return sequential.mean_ratio(mc.sum, mc.sumsq, mc.n, mb.sum, mb.sumsq, mb.n,
                                     max_ratio=c.max_ratio or 1.0, alpha=a, min_n=c.min_samples, metric=m)
    if m == "latency_p95_ms":
        return sequential.quantile_ratio(cand.latency, base.latency, q=0.95, max_ratio=c.max_ratio or 1.0,
                                         alpha=a, min_n=c.min_samples, metric=m)
    raise KeyError(m)


def shadow_criterion(c: Criterion, pairs: VariantStats, alpha: float) -> Any:
    """Paired shadow-vs-live tests on the shadow arm's pair counters (same request, two variants)."""
    bound = c.max_increase or 0.0
    m, n = c.metric, pairs.pairs
    if m == "shadow_guard_failure_rate":
        return shadow.paired_rate_increase(pairs.pair_fail_candidate_only, pairs.pair_fail_baseline_only, n,
                                           max_increase=bound, alpha=alpha, min_n=c.min_samples, metric=m)
    if m == "shadow_disagreement_rate":
        d = n - pairs.agree_similar
        return sequential.mean_difference(float(d), float(d), n, max_increase=bound, alpha=alpha,
                                          min_n=c.min_samples, metric=m)
    delta = pairs.latency_delta if m == "shadow_latency_delta_ms" else pairs.cost_delta
    return sequential.mean_difference(delta.sum, delta.sumsq, delta.n, max_increase=bound, alpha=alpha,
                                      min_n=c.min_samples, metric=m)


def count_exceeds(count: int, n_c: int, n_b: int, *, max_count: int, metric: str) -> Any:
    """A hard limit (safety failures): no statistics, any count above the bound is a violation."""
    worse = count > max_count
    return sequential.Verdict(
        metric=metric, outcome="worse" if worse else "inconclusive",
        estimate_candidate=float(count), estimate_baseline=0.0, effect=float(count), lower=float(count),
        upper=float(count), n_candidate=n_c, n_baseline=n_b, e_value=math.inf if worse else 1.0,
        p_value=0.0 if worse else 1.0, bound=float(max_count))


def srm_verdict(n_base: int, n_cand: int, *, candidate_weight: float | None, alpha: float, min_n: int) -> Any:
    """Sample-ratio mismatch as a verdict: 'worse' means the traffic split itself is broken."""
    total = n_base + n_cand
    share = n_cand / total if total else math.nan
    if total < min_n or candidate_weight is None or not 0 < candidate_weight < 1:
        return sequential.Verdict(
            metric="srm", outcome="insufficient", estimate_candidate=share,
            estimate_baseline=math.nan if candidate_weight is None else candidate_weight, effect=math.nan,
            lower=math.nan, upper=math.nan,
            n_candidate=n_cand, n_baseline=n_base, e_value=1.0, p_value=1.0, bound=alpha)
    r = srm_test([n_base, n_cand], [1 - candidate_weight, candidate_weight], alpha=alpha)
    return sequential.Verdict(
        metric="srm", outcome="worse" if r.mismatch else "not_worse", estimate_candidate=share,
        estimate_baseline=candidate_weight, effect=share - candidate_weight, lower=math.nan, upper=math.nan,
        n_candidate=n_cand, n_baseline=n_base, e_value=r.e_value, p_value=r.p_value, bound=alpha)


@dataclass
class Judgement:
    """The analysis of one feature at one moment: every finding, and the scopes chosen to act on."""

    findings: list[Finding] = field(default_factory=list)
    actions: list[Finding] = field(default_factory=list)


def judge(criteria: list[Criterion], views: Mapping[Scope, tuple[VariantStats, VariantStats]],
          cand: Mapping[SegmentKey, VariantStats], base: Mapping[SegmentKey, VariantStats], alpha: float,
          expected_weight: ExpectedWeight = None, *, retest: dict[tuple[str, Scope], int] | None = None,
          growth: float = 0.02, in_force: Callable[[str], list[Scope]] | None = None,
          robust_overall: bool = False) -> Judgement:
    """Test every criterion on every view (candidate, baseline); choose the scopes that explain violations.

    ``retest`` remembers the candidate sample size at each (metric, scope)'s last test: a view is tested again
    only once it grew by ``growth`` (2 %). Peeking less often keeps an anytime-valid test valid and keeps the
    per-partial cost flat as the number of views grows. ``in_force(action)`` lists the scopes where an action at
    least that strong already holds: their traffic is set aside when attributing new violations.
    ``robust_overall`` acts on everyone only when no single segment value explains the violation (see
    ``concentrated_in``): short windows of data see the overall view cross first, before the guilty segment's
    own view has the samples to.
    """
    out = Judgement()
    for c in criteria:
        scopes = list(views) if c.per_segment else [()]
        a = (c.alpha or alpha) / max(1, len(scopes))
        found = []
        held_all = in_force("pause") if in_force and c.metric == "srm" else []
        for scope in scopes:
            vc, vb = views.get(scope, (VariantStats(), VariantStats()))
            if held_all:  # held scopes no longer follow the stage's split: leave them out of the SRM check
                vc, vb = merged(cand, scope, held_all), merged(base, scope, held_all)
            n_c = vc.pairs if c.metric in SHADOW_METRICS else vc.requests
            if n_c < c.min_samples and c.metric not in COUNT_METRICS:
                continue  # too small to decide anything yet: skip the test entirely (most views, early on)
            if retest is not None and c.metric not in COUNT_METRICS:  # hard limits are not tests: always checked
                key = (c.metric, scope)
                last = retest.get(key)
                # outcome metrics grow with outcomes, which may arrive after the last response (a backlog read
                # partition by partition, or a stage's final outcomes): keyed on requests they were never re-tested
                n = vc.outcomes if c.metric in OUTCOME_METRICS else vc.requests
                if last is not None and n < last * (1 + growth) + 10:
                    continue
                retest[key] = n
            w = expected_weight(scope) if callable(expected_weight) else expected_weight
            f = Finding(c, scope, test_criterion(c, vc, vb, a, w))
            out.findings.append(f)
            if f.worse:
                found.append(f)
        held = in_force(c.action) if in_force else []
        if robust_overall:
            found = [f for f in found if f.scope or concentrated_in(c, cand, base, a, held) is None]
        out.actions.extend(attribute(c, found, cand, base, a, expected_weight, held))

    return out


def attribute(c: Criterion, worse: list[Finding], cand: Mapping[SegmentKey, VariantStats],
              base: Mapping[SegmentKey, VariantStats], alpha: float,
              expected_weight: ExpectedWeight, held: Sequence[Scope] = ()) -> list[Finding]:
    """Pick the scopes to act on: strongest first; later ones must stay worse without the chosen ones."""
    if not worse:
        return []
    order = sorted(worse, key=lambda f: (-_strength(f), len(f.scope), f.scope))
    chosen: list[Finding] = []
    for f in order:
        if any(_covers(sc, f.scope) for sc in [*held, *(ch.scope for ch in chosen)]):
            continue
        excl = [*held, *(ch.scope for ch in chosen)]
        if excl:
            w = expected_weight(f.scope) if callable(expected_weight) else expected_weight
            v = test_criterion(c, merged(cand, f.scope, excl), merged(base, f.scope, excl), alpha, w)
            if v.outcome != "worse":
                continue
        chosen.append(f)
    # a coarser chosen scope makes finer chosen scopes inside it redundant
    return [f for f in chosen if not any(o is not f and _covers(o.scope, f.scope) for o in chosen)]


def beyond_bound(metric: str, v: Any) -> bool:
    """The point estimate is on the wrong side of the criterion's bound (no test: a direction only)."""
    effect = v.effect
    if effect is None or not math.isfinite(effect):
        return False
    return bool(effect < -v.bound if metric in RATE_DOWN_METRICS else effect > v.bound)


def concentrated_in(c: Criterion, cand: Mapping[SegmentKey, VariantStats], base: Mapping[SegmentKey, VariantStats],
                    alpha: float, held: Sequence[Scope] = ()) -> Scope | None:
    """The single segment value whose removal brings an overall violation back within bound, if any: then
    the regression is that segment's, and acting on everyone would be the wrong-segment action."""
    children = sorted({((a, v),) for key in cand for a, v in parse_segment_key(key).items()})
    for scope in children:
        if scope in held:
            continue
        rest = test_criterion(c, merged(cand, (), [*held, scope]), merged(base, (), [*held, scope]), alpha)
        if not beyond_bound(c.metric, rest):
            return scope
    return None


def _covers(outer: Scope, inner: Scope) -> bool:
    return set(outer) <= set(inner)


def _strength(f: Finding) -> float:
    e = f.verdict.e_value
    return float(e) if e is not None and math.isfinite(e) else 1e308

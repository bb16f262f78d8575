"""Judging views: alpha handling, recent epochs and attribution on the pure analysis functions."""

from __future__ import annotations

import math
from pathlib import Path

import orjson

from rollguard.analysis import RECENT_SHARE, concentrated_in, epoch_alpha, judge, stage_alpha
from rollguard.detectors.aggregates import VariantStats
from rollguard.pipeline import SpecBook
from rollguard.replay import replay
from rollguard.simulate import Regression, Traffic
from rollguard.spec import Criterion, load_spec

SPEC = load_spec(Path(__file__).resolve().parents[3] / "rollguard" / "specs" / "support-reply.yaml")


def _stats(errors: int, n: int) -> VariantStats:
    s = VariantStats()
    for i in range(n):
        s.add_response(latency_ms=100.0, cost_usd=0.001, input_tokens=10, output_tokens=10, output_chars=10,
                       error=i < errors, fallback=False, refused=False, critical=False, guards=set())
    return s


def test_alpha_budget_sums_to_the_criterion_alpha() -> None:
    total = stage_alpha(0.05, recent=True) + sum(epoch_alpha(0.05, k) for k in range(1, 200_000))
    assert math.isclose(total, 0.05, rel_tol=1e-4)
    assert stage_alpha(0.05, recent=False) == 0.05
    assert epoch_alpha(0.05, 1) < RECENT_SHARE * 0.05


def test_a_criterions_own_alpha_is_still_divided_across_views() -> None:
    """Setting ``alpha`` on a criterion must not skip the Bonferroni division across views."""
    cand = {f"tier=t{i}": _stats(14, 400) for i in range(12)}  # 3.5 % errors in every segment
    base = {f"tier=t{i}": _stats(4, 400) for i in range(12)}  # 1 %
    views = {((("tier", f"t{i}"),)): (cand[f"tier=t{i}"], base[f"tier=t{i}"]) for i in range(12)}
    implicit = Criterion(metric="error_rate", max_increase=0.0, action="pause", min_samples=100)
    explicit = implicit.model_copy(update={"alpha": 0.05})
    a = judge([implicit], views, cand, base, 0.05)
    b = judge([explicit], views, cand, base, 0.05)
    assert [f.verdict.outcome for f in a.findings] == [f.verdict.outcome for f in b.findings]
    assert [f.verdict.e_value for f in a.findings] == [f.verdict.e_value for f in b.findings]


def test_an_overall_violation_one_segment_explains_is_that_segments() -> None:
    c = Criterion(metric="error_rate", max_increase=0.02, action="pause", min_samples=100)
    cand = {"tier=pro": _stats(60, 300), "tier=free": _stats(9, 900)}  # 20 % in pro, 1 % elsewhere
    base = {"tier=pro": _stats(9, 900), "tier=free": _stats(27, 2700)}
    assert concentrated_in(c, cand, base, 0.05) == (("tier", "pro"),)
    spread = {"tier=pro": _stats(30, 300), "tier=free": _stats(90, 900)}  # 10 % everywhere
    assert concentrated_in(c, spread, base, 0.05) is None


def _first_action(regression: Regression, recent_epoch: int) -> tuple[str, dict[str, str], str, str]:
    """The first decision: action, scope, metric and the event time it was taken at."""
    spec = SPEC.model_copy(update={"recent_epoch": recent_epoch})
    events = Traffic(seed=41, regressions=[regression]).events(30_000)
    res = replay((orjson.dumps(e) for e in events), SpecBook({spec.feature: spec}), flush_every=200)
    decisions = res.decoded("decisions")
    assert decisions, "nothing detected"
    d = decisions[0]
    return d["decision"], d["scope"], d["evidence"]["metric"], d["event_time"]


def test_a_late_regression_of_everyone_is_seen_sooner_in_its_epoch() -> None:
    """Errors ramp 1 % -> 10 % from response 6,000 on: the whole-stage test is diluted by the healthy start,
    the recent epoch is not, so the same pause comes earlier in event time."""
    ramp = Regression("error_rate", 0.10, start=6000, ramp=12_000)
    whole = _first_action(ramp, recent_epoch=0)
    recent = _first_action(ramp, recent_epoch=1000)
    assert whole[:3] == recent[:3] == ("pause", {}, "error_rate")
    assert recent[3] < whole[3], (recent, whole)  # ISO-8601 UTC strings order as times

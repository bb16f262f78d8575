"""The baselines work as baselines: they catch an obvious regression and mostly stay quiet on A/A."""

from __future__ import annotations

import numpy as np
import pytest

from bench.comparators import EventFrame, KayentaJudge, MetricDef, ThresholdPolicy, hodges_lehmann_ci, metrics_for
from bench.scenarios import SHIPPED_SPEC
from rollguard.simulate import Regression, Traffic
from rollguard.spec import load_spec

SPEC = load_spec(SHIPPED_SPEC)
METRICS = metrics_for(SPEC)


def frame(traffic: Traffic, n: int = 8000) -> EventFrame:
    return EventFrame.from_events(traffic.events(n))


def test_metrics_follow_the_spec() -> None:
    names = {m.name for m in METRICS}
    assert {"escalation_rate", "task_success_rate", "error_rate", "latency_p95_ms", "cost_per_request",
            "safety_failures"} <= names
    assert "srm" not in names  # neither anchor checks the split
    assert {m.name for m in METRICS if m.critical} == {"escalation_rate", "task_success_rate", "safety_failures"}


def test_threshold_policy_catches_an_obvious_error_spike() -> None:
    acts = ThresholdPolicy().run(frame(Traffic(seed=3, regressions=[Regression("error_rate", 0.15, start=3000)])),
                                 METRICS)
    assert len(acts) == 1 and acts[0].metric == "error_rate" and acts[0].scope == {}
    assert 3000 <= acts[0].at < 8000


def test_threshold_policy_aborts_on_the_first_leak() -> None:
    acts = ThresholdPolicy().run(frame(Traffic(seed=4, regressions=[Regression("leak", 0.05, start=4000)])),
                                 METRICS)
    assert [(a.metric, a.at) for a in acts] == [("safety_failures", 4999)]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_threshold_policy_is_quiet_on_aa(seed: int) -> None:
    assert ThresholdPolicy().run(frame(Traffic(seed=seed)), METRICS) == []


def test_kayenta_judge_fails_a_slow_canary() -> None:
    acts = KayentaJudge().run(frame(Traffic(seed=5, regressions=[Regression("latency", 2.0)])), METRICS)
    assert len(acts) == 1 and acts[0].metric == "latency_p95_ms"


def test_kayenta_critical_metric_fails_at_once() -> None:
    f = frame(Traffic(seed=6, regressions=[Regression("escalation_rate", 0.15)]))
    acts = KayentaJudge().run(f, METRICS)
    assert len(acts) == 1 and acts[0].metric == "escalation_rate" and not acts[0].detail["final"]


def test_kayenta_judge_is_mostly_quiet_on_aa() -> None:
    fired = sum(bool(KayentaJudge().run(frame(Traffic(seed=s)), METRICS)) for s in (21, 22, 23))
    assert fired <= 1


def test_hodges_lehmann_interval_covers_the_shift() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 200)
    est, lo, hi = hodges_lehmann_ci(x, y, 0.98)
    assert lo < 1.0 < hi and abs(est - 1.0) < 0.3


def test_kayenta_classification_needs_direction_and_tolerance() -> None:
    judge = KayentaJudge()
    up = MetricDef("m", "mean", "up", 0.0)
    lo_vals = np.linspace(1.0, 2.0, 40)
    assert judge.classify(up, lo_vals + 1.0, lo_vals)[0] == "High"
    assert judge.classify(up, lo_vals - 1.0, lo_vals)[0] == "Pass"  # better is not a failure
    assert judge.classify(MetricDef("m", "mean", "down", 0.0), lo_vals - 1.0, lo_vals)[0] == "Low"

"""Each kind of regression, confined to one segment, ends in the right action for that segment only."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rollguard.pipeline import SpecBook
from rollguard.replay import replay
from rollguard.simulate import Regression, Traffic
from rollguard.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parents[3] / "rollguard" / "specs" / "support-reply.yaml")


def run(traffic: Traffic, n: int = 30_000) -> list[tuple[str, dict[str, str], str]]:
    res = replay((orjson.dumps(e) for e in traffic.events(n)), SpecBook({SPEC.feature: SPEC}))
    return [(c["action"], c["scope"], c["evidence"]["metric"]) for c in res.decoded("control")]


@pytest.mark.parametrize(("regression", "expected"), [
    (Regression("escalation_rate", 0.12, {"tier": "premium"}), ("rollback", {"tier": "premium"}, "escalation_rate")),
    (Regression("task_success_rate", 0.70, {"use_case": "billing"}),
     ("rollback", {"use_case": "billing"}, "task_success_rate")),
    (Regression("latency", 1.6, {"geo": "eu"}), ("pause", {"geo": "eu"}, "latency_p95_ms")),
    (Regression("cost", 2.0, {"tier": "pro"}), ("pause", {"tier": "pro"}, "cost_per_request")),
    (Regression("error_rate", 0.08, {"tier": "free"}), ("pause", {"tier": "free"}, "error_rate")),
])
def test_segment_regression_is_attributed_to_its_segment(regression: Regression,
                                                         expected: tuple[str, dict[str, str], str]) -> None:
    assert run(Traffic(seed=31, regressions=[regression])) == [expected]


def test_broken_split_pauses_everything() -> None:
    cmds = run(Traffic(seed=32, canary_weight=0.21))
    assert cmds == [("pause", {}, "srm")]


@pytest.mark.parametrize("seed", [40, 41, 42])
def test_aa_runs_stay_quiet(seed: int) -> None:
    assert run(Traffic(seed=seed)) == []

"""Shadow stage: candidate outputs paired with the live baseline response to the same request."""

from __future__ import annotations

import orjson
import pytest

from rollguard.pipeline import IngestFold, SpecBook
from rollguard.replay import replay
from rollguard.simulate import Regression, Traffic
from rollguard.spec import parse_spec

SPEC = parse_spec({
    "feature": "support-reply", "flag": "support-reply-model", "segment_by": ["tier", "use_case"],
    "stages": [{"name": "shadow", "mode": "shadow", "min_requests": 2000}, {"name": "canary-5", "weight": 0.05}],
    "criteria": [
        {"metric": "shadow_disagreement_rate", "max_increase": 0.10, "action": "pause"},
        {"metric": "shadow_guard_failure_rate", "max_increase": 0.01, "action": "pause"},
        {"metric": "shadow_latency_delta_ms", "max_increase": 100, "action": "pause"},
        {"metric": "escalation_rate", "max_increase": 0.01, "action": "rollback"},
        {"metric": "srm", "action": "pause", "per_segment": False},
    ],
})


def run(traffic: Traffic, n: int = 20_000) -> list[tuple[str, dict[str, str], str]]:
    res = replay((orjson.dumps(e) for e in traffic.events(n)), SpecBook({SPEC.feature: SPEC}))
    return [(c["action"], c["scope"], c["evidence"]["metric"]) for c in res.decoded("control")]


def test_pairs_whichever_side_arrives_first() -> None:
    fold = IngestFold(SpecBook({SPEC.feature: SPEC}))
    evs = [e for e in Traffic(seed=1, shadow=True).events(20) if e["schema"].endswith("response/v1")]
    live = [e for e in evs if e["mode"] == "live"]
    shadow = [e for e in evs if e["mode"] == "shadow"]
    for i, e in enumerate(shadow[:10] + live + shadow[10:]):
        fold.process(orjson.dumps(e), topic="t", partition=0, offset=i)
    assert fold.counters.shadow_pairs == 20
    entries = orjson.loads(fold.flush()[0].value)["entries"]
    shadow_arm = [e[3] for e in entries if e[1] == "canary@shadow"]
    assert sum(s["pairs"] for s in shadow_arm) == 20
    assert sum(s.get("agree_similar", 0) for s in shadow_arm) >= 15  # 2 % base disagreement


@pytest.mark.parametrize(("regression", "expected"), [
    (Regression("disagree", 0.4, {"use_case": "billing"}), ("pause", {"use_case": "billing"},
                                                             "shadow_disagreement_rate")),
    (Regression("latency", 1.5, {"tier": "premium"}), ("pause", {"tier": "premium"}, "shadow_latency_delta_ms")),
])
def test_shadow_regression_pauses_its_segment(regression: Regression,
                                              expected: tuple[str, dict[str, str], str]) -> None:
    assert run(Traffic(seed=2, shadow=True, regressions=[regression])) == [expected]


def test_healthy_shadow_is_promoted_to_the_first_canary_stage() -> None:
    assert run(Traffic(seed=3, shadow=True)) == [("promote", {}, "gates")]

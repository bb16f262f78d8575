"""Scenario presets state a ground truth that their traffic actually has, and the bench scores runs right."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bench.scenarios import judge_run, spec_for, within
from rollguard.simulate import SCENARIOS, GroundTruth, Traffic


def responses(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["schema"].startswith("rollguard.response")]


def rate(events: list[dict[str, Any]], field: str, *, variant: str, **seg: str) -> float:
    arm = {e["request_id"]: e for e in responses(events)}
    hits = n = 0
    for e in events:
        if e["schema"].startswith("rollguard.outcome"):
            r = arm[e["request_id"]]
            if r["variant"] == variant and all(r["segment"][k] == v for k, v in seg.items()):
                n += 1
                hits += bool(e[field])
    return hits / n


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_names_a_judged_metric(name: str) -> None:
    sc = SCENARIOS[name]
    spec = spec_for(sc)
    t = sc.truth
    assert t.action in ("none", "pause", "rollback")
    if t.regression:
        criteria = {c.metric: c.action for c in spec.criteria}
        if t.metric == "safety_failures":
            assert spec.on_critical_guard == t.action
        elif t.metric == "srm":
            assert criteria["srm"] == t.action
        else:
            assert criteria[t.metric] == t.action
        assert set(t.scope) <= set(spec.segment_by)
    else:
        assert t.metric == "none" and t.scope == {}


def test_presets_are_seeded() -> None:
    a = list(SCENARIOS["aa"].traffic(5).events(300))
    b = list(SCENARIOS["aa"].traffic(5).events(300))
    assert a == b
    assert a != list(SCENARIOS["aa"].traffic(6).events(300))


def test_rich_text_is_varied() -> None:
    outs = [e["output"] for e in responses(list(SCENARIOS["aa"].traffic(1).events(3000)))]
    lengths = sorted(len(o) for o in outs)
    assert lengths[len(lengths) // 10] < 150 < lengths[-len(lengths) // 20]
    assert 0.04 < sum(o.startswith("{") for o in outs) / len(outs) < 0.12  # some JSON outputs
    assert any("@example.com" in o for o in outs)  # PII at a base rate


def test_escalation_regression_is_premium_only() -> None:
    ev = list(SCENARIOS["escalation-premium"].traffic(2).events(12_000))
    assert rate(ev, "escalated", variant="canary", tier="premium") > 0.11
    assert rate(ev, "escalated", variant="baseline", tier="premium") < 0.08
    assert abs(rate(ev, "escalated", variant="canary", tier="free")
               - rate(ev, "escalated", variant="baseline", tier="free")) < 0.015


def test_mix_shift_changes_both_arms_alike() -> None:
    ev = responses(list(SCENARIOS["mix-shift"].traffic(3).events(12_000)))
    for variant in ("baseline", "canary"):
        before = Counter(e["segment"]["tier"] for e in ev[:8000] if e["variant"] == variant)
        after = Counter(e["segment"]["tier"] for e in ev[8000:] if e["variant"] == variant)
        assert before["premium"] / sum(before.values()) < 0.2 < 0.3 < after["premium"] / sum(after.values())


def test_leak_burst_is_canary_only_and_bounded() -> None:
    ev = responses(list(SCENARIOS["leak-burst"].traffic(4).events(8000)))
    leaks = [i for i, e in enumerate(ev) if "AKIA" in e["output"]]
    assert leaks and all(6000 <= i < 7000 and ev[i]["variant"] == "canary" for i in leaks)


def test_late_outcomes_arrive_late_or_never() -> None:
    ev = list(SCENARIOS["late-outcomes"].traffic(5).events(6000))
    seen: dict[str, int] = {}
    lags = []
    for e in ev:
        if e["schema"].startswith("rollguard.response"):
            seen[e["request_id"]] = len(seen)
        else:
            lags.append(len(seen) - 1 - seen[e["request_id"]])
    assert len(lags) < 0.5 * len(seen)  # half never sent, and those due after the end are missing
    assert sorted(lags)[len(lags) // 2] > 1000


def test_broken_split_and_shadow() -> None:
    ev = responses(list(SCENARIOS["broken-split"].traffic(6).events(10_000)))
    assert 0.2 < sum(e["variant"] == "canary" for e in ev) / len(ev) < 0.235
    sh = responses(list(SCENARIOS["shadow-disagreement"].traffic(7).events(100)))
    assert Counter(e["mode"] for e in sh) == {"live": 100, "shadow": 100}


def test_ramp_reaches_its_level_gradually() -> None:
    t = Traffic(seed=1)
    from rollguard.simulate import Regression

    r = Regression("error_rate", 0.10, start=100, ramp=100)
    assert r.level(100, 0.01) == pytest.approx(0.0109) and r.level(199, 0.01) == pytest.approx(0.10)
    assert r.level(500, 0.01) == pytest.approx(0.10) and t.text == "basic"


def test_scoring() -> None:
    truth = GroundTruth("rollback", {"tier": "premium"}, "escalation_rate", 1000)
    assert within({"tier": "premium", "geo": "eu"}, truth.scope) and not within({}, truth.scope)
    act = {"action": "rollback", "at": 1500, "metric": "escalation_rate", "scope": {}}
    j = judge_run([act], truth)
    assert j["detected"] and j["events"] == 500 and j["wrong_segment_rollbacks"] == 1 and not j["false"]
    early = judge_run([act | {"at": 10, "scope": {"tier": "premium"}}], truth)
    assert early["false"] and not early["detected"]
    assert judge_run([act], GroundTruth("none"))["false"]

"""The per-event fold and the per-feature analysis, without Kafka (the same calls the agents make)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import orjson

from rollguard.contracts import Command
from rollguard.pipeline import Analyzer, IngestFold, SpecBook
from rollguard.replay import replay
from rollguard.signing import Signer, Verifier, generate_keypair
from rollguard.simulate import Regression, Traffic
from rollguard.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parents[3] / "rollguard" / "specs" / "support-reply.yaml")
PREMIUM = {"tier": "premium"}


def recorded(traffic: Traffic, n: int) -> list[bytes]:
    return [orjson.dumps(ev) for ev in traffic.events(n)]


def test_premium_regression_rolls_back_premium_only() -> None:
    priv, pub = generate_keypair()
    res = replay(recorded(Traffic(seed=1, regressions=[Regression("escalation_rate", 0.15, PREMIUM)]), 30_000),
                 SpecBook({SPEC.feature: SPEC}), signer=Signer.from_base64("k", priv))
    cmds = res.decoded("control")
    assert [(c["action"], c["scope"]) for c in cmds] == [("rollback", PREMIUM)]
    assert Verifier({"k": pub}).verify(Command.model_validate(cmds[0])) is None
    assert cmds[0]["evidence"]["metric"] == "escalation_rate"
    assert [a["command_id"] for a in res.decoded("alerts") if a["kind"] == "criterion"] == [cmds[0]["command_id"]]
    assert len(res.decoded("decisions")) == 1


def test_aa_traffic_triggers_nothing() -> None:
    res = replay(recorded(Traffic(seed=2), 30_000), SpecBook({SPEC.feature: SPEC}))
    assert res.decoded("control") == []


def test_dlq_keeps_going_and_counts() -> None:
    fold = IngestFold(SpecBook({SPEC.feature: SPEC}))
    good = recorded(Traffic(seed=3), 50)
    bad = [b"nope", b"\xff", b'{"schema":"rollguard.response/v7"}', b"{}"]
    out = []
    for i, raw in enumerate([*bad, *good]):
        out.extend(fold.process(raw, topic="t", partition=0, offset=i))
    dlq = [orjson.loads(e.value) for e in out if e.kind == "dlq"]
    assert [d["offset"] for d in dlq] == [0, 1, 2, 3]
    assert fold.counters.dlq == 4 and fold.counters.responses == 50
    partial = orjson.loads(fold.flush()[0].value)
    assert sum(e[3]["requests"] for e in partial["entries"]) == 50
    assert partial["source"] == {"t:0": [4, 103]}


def test_outcomes_join_before_or_after_and_dedupe() -> None:
    fold = IngestFold(SpecBook({SPEC.feature: SPEC}))
    evs = list(Traffic(seed=4).events(10))
    responses = [orjson.dumps(e) for e in evs if e["schema"].startswith("rollguard.response")]
    outcomes = [orjson.dumps(e) for e in evs if e["schema"].startswith("rollguard.outcome")]
    for i, raw in enumerate(outcomes[:5] + responses + outcomes[5:] + outcomes[:2]):  # early, late, duplicate
        fold.process(raw, topic="t", partition=0, offset=i)
    c = fold.counters
    assert (c.outcomes_joined, c.outcome_duplicates, c.outcomes_pending) == (10, 2, 0)


def test_restored_analyzer_does_not_reissue() -> None:
    specs = SpecBook({SPEC.feature: SPEC})
    records = recorded(Traffic(seed=5, regressions=[Regression("escalation_rate", 0.2, PREMIUM)]), 40_000)
    first = Analyzer(specs)
    res1 = replay(records[:50_000], specs, analyzer=first)
    assert len(res1.decoded("control")) == 1
    second = Analyzer(specs)
    second.restore(SPEC.feature, first.features[SPEC.feature].to_bytes())
    res2 = replay(records[50_000:], specs, analyzer=second)
    assert res2.decoded("control") == []


def test_duplicate_partials_are_skipped() -> None:
    specs = SpecBook({SPEC.feature: SPEC})
    fold = IngestFold(specs)
    for i, raw in enumerate(recorded(Traffic(seed=6), 100)):
        fold.process(raw, topic="t", partition=0, offset=i)
    partial = fold.flush()[0].value
    an = Analyzer(specs)
    an.apply(partial)
    an.apply(partial)
    rt = an.features[SPEC.feature]
    assert rt.duplicate_partials == 1
    assert sum(s.requests for segs in rt.stage_stats.values() for s in segs.values()) == 100


def test_one_leaked_secret_in_a_busy_segment_acts_at_the_next_analysis() -> None:
    """Hard limits bypass the re-test throttle that spaces out the statistical tests."""
    sp = SPEC.model_copy(update={"on_critical_guard": "rollback"})
    specs = SpecBook({sp.feature: sp})
    fold, an = IngestFold(specs), Analyzer(specs)
    events = [e for e in Traffic(seed=8).events(4000) if e["schema"].endswith("response/v1")]
    for i, ev in enumerate(events):
        fold.process(orjson.dumps(ev), topic="t", partition=0, offset=i)
    for p in fold.flush():
        assert not [e for e in an.apply(p.value) if e.kind == "control"]
    leak = next(e for e in events if e["variant"] == "canary")
    leak = {**leak, "event_id": "leak-1", "request_id": "leak-1", "output": "key AKIAABCDEFGHIJKLMNOP here"}
    fold.process(orjson.dumps(leak), topic="t", partition=0, offset=len(events))
    out = [e for p in fold.flush() for e in an.apply(p.value)]
    cmds = [orjson.loads(e.value) for e in out if e.kind == "control"]
    assert [(c["action"], c["evidence"]["metric"]) for c in cmds] == [("rollback", "safety_failures")]


def test_outcomes_are_judged_only_after_the_outcome_delay() -> None:
    """With outcome_delay, a window's outcomes count once they have all had time to arrive."""
    traffic = Traffic(seed=9, regressions=[Regression("escalation_rate", 0.2, PREMIUM)])
    records = recorded(traffic, 30_000)
    quick = replay(records, SpecBook({SPEC.feature: SPEC})).decoded("decisions")
    slow_spec = SPEC.model_copy(update={"outcome_delay": timedelta(seconds=60)})
    slow = replay(records, SpecBook({SPEC.feature: slow_spec})).decoded("decisions")
    assert [d["scope"] for d in quick] == [d["scope"] for d in slow] == [PREMIUM]
    t0 = traffic.start.timestamp()
    t_quick = datetime.fromisoformat(quick[0]["event_time"]).timestamp() - t0
    t_slow = datetime.fromisoformat(slow[0]["event_time"]).timestamp() - t0
    # the first 60 s window's outcomes count only once the clock passes its end plus the delay
    assert t_quick < 120 <= t_slow


def test_segments_past_the_cap_fold_into_overflow_and_still_count_overall() -> None:
    specs = SpecBook({SPEC.feature: SPEC})
    fold, an = IngestFold(specs, max_segments_per_feature=5), Analyzer(specs)
    for i, ev in enumerate(Traffic(seed=10).events(400)):
        fold.process(orjson.dumps(ev), topic="t", partition=0, offset=i)
    assert fold.counters.segment_overflow > 0
    for p in fold.flush():
        an.apply(p.value)
    rt = an.features[SPEC.feature]
    total = sum(s.requests for segs in rt.stage_stats.values() for s in segs.values())
    overall = sum(v[()].requests for v in rt.views.values())
    assert total == overall == 400


def test_records_already_in_published_partials_are_not_counted_twice() -> None:
    specs = SpecBook({SPEC.feature: SPEC})
    records = recorded(Traffic(seed=11), 200)
    first = IngestFold(specs)
    for i, raw in enumerate(records[:250]):
        first.process(raw, topic="t", partition=0, offset=i)
    published = orjson.loads(first.flush()[0].value)
    # a restarted fold re-reads from offset 100 (its last commit) with what the partials topic says
    again = IngestFold(specs)
    again.already_published({published["feature"]: {tp: hi for tp, (_lo, hi) in published["source"].items()}})
    for i, raw in enumerate(records[100:], start=100):
        again.process(raw, topic="t", partition=0, offset=i)
    entries = orjson.loads(again.flush()[0].value)["entries"]
    total = sum(e[3].get("requests", 0) for e in entries)
    joined = sum(e[3].get("outcomes", 0) for e in entries)
    assert total == 200 - sum(1 for r in records[:250] if b"response/v1" in r)
    # responses re-read below the published mark are skipped; outcomes are read again (one may have been
    # waiting for its response back then), so the 75 re-read outcomes count again: bounded, never lost
    assert again.counters.replayed_skipped == 75 and joined == 150

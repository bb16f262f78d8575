"""The per-event fold and the per-feature analysis, without Kafka (the same calls the agents make)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from rollguard.contracts import Command
from rollguard.pipeline import Analyzer, IngestFold, SpecBook, expand_runs
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
    again.already_published({published["feature"]: {tp: hi for tp, (_lo, hi) in published["source"].items()}},
                            {tp: expand_runs(runs, at_least=100) for tp, runs in published["joined"].items()})
    for i, raw in enumerate(records[100:], start=100):
        again.process(raw, topic="t", partition=0, offset=i)
    entries = orjson.loads(again.flush()[0].value)["entries"]
    total = sum(e[3].get("requests", 0) for e in entries)
    joined = sum(e[3].get("outcomes", 0) for e in entries)
    assert total == 200 - sum(1 for r in records[:250] if b"response/v1" in r)
    # re-read responses below the published mark and re-read outcomes the partial lists as joined are skipped
    assert again.counters.replayed_skipped == 75 and again.counters.replayed_outcomes_skipped == 75
    assert joined == 200 - 75 - 50


def _books(partials: list[bytes]) -> tuple[int, int]:
    requests = outcomes = 0
    for raw in partials:
        for e in orjson.loads(raw)["entries"]:
            requests += e[3].get("requests", 0)
            outcomes += e[3].get("outcomes", 0)
    return requests, outcomes


@pytest.mark.parametrize("seed", range(12))
def test_crash_anywhere_counts_every_record_exactly_once(seed: int) -> None:
    """Kill the fold at random points (unflushed work is lost, the commit lags the flushes), restart it from
    the committed offsets with what the published partials say: every response and every joined outcome is
    counted exactly once, including outcomes that waited for their response across flushes and a kill."""
    rng = random.Random(seed)
    specs = SpecBook({SPEC.feature: SPEC})
    evs = list(Traffic(seed=100 + seed).events(600))
    for _ in range(60):  # some outcomes arrive before their response (they wait in the join)
        a = rng.randrange(len(evs) - 1)
        evs[a], evs[a + 1] = evs[a + 1], evs[a]
    stream: list[tuple[str, int, bytes]] = []  # (topic, offset, raw), in the order the consumer sees them
    next_off = {"pairs": 0, "outcomes": 0}
    for ev in evs:
        topic = "pairs" if ev["schema"].startswith("rollguard.response") else "outcomes"
        stream.append((topic, next_off[topic], orjson.dumps(ev)))
        next_off[topic] += 1
    truth_requests = next_off["pairs"]
    response_ids = {ev["request_id"] for ev in evs if ev["schema"].startswith("rollguard.response")}
    truth_outcomes = sum(1 for ev in evs if ev["schema"].startswith("rollguard.outcome")
                         and ev["request_id"] in response_ids)

    published: list[bytes] = []
    committed = {"pairs:0": 0, "outcomes:0": 0}
    for _life in range(8):
        fold = IngestFold(specs)
        marks: dict[str, dict[str, int]] = {}
        joined: dict[str, list[int]] = {}
        for raw in published:
            p = orjson.loads(raw)
            for tp, (_lo, hi) in p["source"].items():
                marks.setdefault(p["feature"], {})[tp] = max(marks.get(p["feature"], {}).get(tp, -1), hi)
            for tp, runs in p["joined"].items():
                joined.setdefault(tp, []).extend(expand_runs(runs, at_least=committed[tp]))
        fold.already_published(marks, joined)
        for topic, off, raw in stream:  # as the runtime recalls recent responses below the commit into the join
            if topic == "pairs" and off < committed["pairs:0"]:
                fold.recall(raw)
        todo = [r for r in stream if r[1] >= committed[f"{r[0]}:0"]]
        kill_at = rng.randrange(len(todo) + 1) if _life < 7 else len(todo)
        position = dict(committed)
        for n, (topic, off, raw) in enumerate(todo[:kill_at]):
            fold.process(raw, topic=topic, partition=0, offset=off)
            position[f"{topic}:0"] = off + 1
            if rng.random() < 0.02 or n == kill_at - 1 == len(todo) - 1:
                published.extend(e.value for e in fold.flush() if e.kind == "partials")
                if rng.random() < 0.6:  # the commit sometimes lags: a kill re-reads what is already published
                    waiting = fold.waiting_outcomes()
                    committed = {tp: min(pos, waiting.get(tp, pos)) for tp, pos in position.items()}
        if kill_at == len(todo) and _life == 7:
            published.extend(e.value for e in fold.flush() if e.kind == "partials")
    assert _books(published) == (truth_requests, truth_outcomes)

"""Hostile input on every input topic (pairs, outcomes) and on the control topic.

The worker never crashes, every bad record reaches the DLQ with the reason an offline ``decode`` gives for
it, and the good records interleaved with them are all counted (checked through the published partials).
The hostile corpus is drawn by hypothesis (derandomized, so CI sees the same records every run) plus a fixed
list of the kinds the issue names; the counts tried are printed.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rollguard.client import ControlSubscriber, EventProducer
from rollguard.contracts import Action, Command, ContractError, decode, decode_dlq
from rollguard.signing import Signer
from rollguard.simulate import Traffic
from rollguard.topics import create_topics
from tests.faults.harness import GroupLag, Keys, WorkerProc, fresh_settings, read_all, read_json, wait_until
from tests.faults.test_fold_fuzz import json_values, mutated, nested

FEATURE = "support-reply"
GOOD = 3000  # good responses (each with its outcome) interleaved with the hostile records


def fixed_kinds(base: dict[str, Any]) -> dict[str, bytes]:
    big_segment = {**base, "segment": {f"attr{i}": f"value{i}" for i in range(20_000)}}
    return {
        "malformed JSON": b'{"schema": "rollguard.response/v1", "event_id": ',
        "html": b"<html><body>502 Bad Gateway</body></html>",
        "invalid UTF-8": b'{"schema":"rollguard.response/v1","output":"\xc3\x28\xa0\xa1\xff"}',
        "deeply nested": nested(200_000),
        "wrong types": orjson.dumps({**base, "latency_ms": "slow", "usage": [1, 2]}),
        "unknown schema version": orjson.dumps({**base, "schema": "rollguard.response/v2"}),
        "command on an input topic": orjson.dumps({"schema": "rollguard.command/v1", "command_id": "x"}),
        "huge segment map": orjson.dumps(big_segment),
        "empty": b"",
        "JSON array": b"[" + b"1," * 1000 + b"1]",
        "700 KB of garbage": b"\x00\x01garbage" * 70_000,
    }


def hostile_corpus(n: int = 300) -> list[bytes]:
    """``n`` records drawn by hypothesis (derandomized: the same corpus on every run)."""
    other = [ev | {"feature": "hostile-feature"} for ev in Traffic(seed=99).events(50)]
    elsewhere = st.sampled_from(other).map(lambda ev: orjson.dumps(copy.deepcopy(ev)))
    corpus: list[bytes] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=3000), json_values.map(orjson.dumps), mutated(), elsewhere))
    def collect(raw: bytes) -> None:
        corpus.append(raw)

    collect()
    return corpus


def expected_reason(raw: bytes) -> str | None:
    try:
        ev = decode(raw)
    except ContractError as exc:
        return exc.reason
    return None if ev.feature != FEATURE else "VALID-SAME-FEATURE"


def test_hostile_records_reach_the_dlq_and_good_ones_still_count(broker: str, tmp_path: Path) -> None:
    # mutations that happen to keep the contract for this very feature would be counted as good traffic:
    # leave them out so the good-record count stays exact
    drawn = [raw for raw in hostile_corpus() if expected_reason(raw) != "VALID-SAME-FEATURE"]
    settings_ = fresh_settings(broker)
    keys = Keys()
    good = list(Traffic(seed=5).events(GOOD))
    hostile = list(fixed_kinds(good[0]).items()) + [(f"hypothesis #{i}", raw) for i, raw in enumerate(drawn)]
    expect = {f"bad-{i}": (name, expected_reason(raw)) for i, (name, raw) in enumerate(hostile)}
    assert not [k for k, (_n, r) in expect.items() if r == "VALID-SAME-FEATURE"], "corpus must not feed the feature"
    bad_keys = {k for k, (_n, r) in expect.items() if r is not None}
    create_topics(settings_)
    with WorkerProc(settings_, keys, tmp_path) as worker:
        lag = GroupLag(settings_)
        with EventProducer(settings_, config={"message.max.bytes": 2_000_000}) as p:
            step = max(1, len(good) // (len(hostile) + 1))
            h = 0
            for i, ev in enumerate(good):
                assert p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
                if i % step == 0 and h < len(hostile):
                    topic = settings_.topics.pairs if h % 2 == 0 else settings_.topics.outcomes
                    p.send_raw(topic, f"bad-{h}".encode(), hostile[h][1])
                    h += 1
            while h < len(hostile):
                p.send_raw(settings_.topics.outcomes, f"bad-{h}".encode(), hostile[h][1])
                h += 1
            assert p.flush(60) == 0 and p.failed == 0, p.last_error
        t = settings_.topics

        def counted() -> tuple[int, int]:
            mine = [p for p in read_json(settings_, t.partials) if p["feature"] == FEATURE]
            return (sum(e[3].get("requests", 0) for p in mine for e in p["entries"]),
                    sum(e[3].get("outcomes", 0) for p in mine for e in p["entries"]))

        # not lag.drained(): a drawn record that is a valid outcome with no response (on either input topic) waits
        # in the join, and ingest commits its partition no further than a waiting outcome (so it is re-read after
        # a crash); so wait until every bad record and every good count has come out
        wait_until(lambda: len(read_all(settings_, t.dlq)) >= len(bad_keys) and min(counted()) >= GOOD, 180,
                   "the worker to drain hostile input", step=1.0)
        lag.close()
        assert worker.alive(), worker.log_text()[-3000:]
        dlq = [decode_dlq(v) for _, v in read_all(settings_, t.dlq) if v]
        partials = read_json(settings_, t.partials)
        log = worker.log_text()
    by_key = {r.key.decode(): r for r in dlq if r.key}
    assert set(by_key) == bad_keys, (sorted(set(by_key) ^ bad_keys)[:10])
    assert len(dlq) == len(bad_keys), "a bad record was sent to the DLQ twice"
    for k in bad_keys:
        name, reason = expect[k]
        assert by_key[k].reason == reason, (name, by_key[k].reason, reason)
        assert by_key[k].size == len(hostile[int(k.split("-")[1])][1])
    mine = [p for p in partials if p["feature"] == FEATURE]
    responses = sum(e[3].get("requests", 0) for p in mine for e in p["entries"])
    outcomes = sum(e[3].get("outcomes", 0) for p in mine for e in p["entries"])
    assert (responses, outcomes) == (GOOD, GOOD)
    assert "Traceback" not in log and "unexpected error" not in log
    reasons = Counter(r.split(":")[0] for _n, r in expect.values() if r)
    print(f"hostile records tried: {len(hostile)} ({len(fixed_kinds(good[0]))} fixed kinds + {len(drawn)} drawn "
          f"by hypothesis, {len(set(drawn))} distinct"
          f") on pairs+outcomes; to DLQ {len(dlq)}; valid-for-another-feature "
          f"{len(hostile) - len(bad_keys)}; good responses/outcomes counted {responses}/{outcomes}; "
          f"reasons {dict(reasons.most_common())}")


def test_control_topic_garbage_is_rejected_and_the_subscriber_keeps_going(broker: str) -> None:
    settings_ = fresh_settings(broker)
    create_topics(settings_)
    keys = Keys()
    signer = Signer.from_base64(keys.key_id, keys.private)
    forger = Keys()
    forged = Signer.from_base64(keys.key_id, forger.private)
    stranger = Signer.from_base64("nobody", forger.private)

    def cmd(seq: int, **kw: Any) -> Command:
        body: dict[str, Any] = {"command_id": f"c-{seq}", "seq": seq, "flag": "support-reply-model",
                                "feature": FEATURE, "action": Action.ROLLBACK, "variant": "canary",
                                "scope": {"tier": "premium"}, "weight": 0.0, "reason": "test"}
        body.update(kw)
        return Command(**body)

    good = signer.sign(cmd(5))
    garbage: list[tuple[str, bytes | None, bytes]] = [
        ("not JSON", b"k", b"\x00\xff garbage"),
        ("wrong schema", b"k", orjson.dumps({"schema": "rollguard.command/v9"})),
        ("missing fields", b"k", orjson.dumps({"schema": "rollguard.command/v1", "seq": 1})),
        ("unsigned", good.control_key.encode(), cmd(6).to_bytes()),
        ("forged", good.control_key.encode(), forged.sign(cmd(7)).to_bytes()),
        ("unknown key id", good.control_key.encode(), stranger.sign(cmd(8)).to_bytes()),
        ("tampered", good.control_key.encode(),
         orjson.dumps({**orjson.loads(signer.sign(cmd(9)).to_bytes()), "weight": 1.0})),
        ("wrong key", b"other-flag", signer.sign(cmd(10)).to_bytes()),
        ("deeply nested", b"k", nested(100_000)),
        ("700 KB", b"k", b"x" * 700_000),
        ("extra field", b"k", orjson.dumps({**orjson.loads(good.to_bytes()), "exec": "rm -rf /"})),
    ]
    with EventProducer(settings_, config={"message.max.bytes": 2_000_000}) as p:
        for _name, k, v in garbage:
            p.send_raw(settings_.topics.control, k, v)
        p.send_raw(settings_.topics.control, good.control_key.encode(), good.to_bytes())
        p.send_raw(settings_.topics.control, good.control_key.encode(), good.to_bytes())  # replay
        for _name, k, v in garbage:
            p.send_raw(settings_.topics.control, k, v)
        assert p.flush(30) == 0
    total = 2 * len(garbage) + 2
    with ControlSubscriber(settings_, verifier=keys.verifier()) as sub:
        assert sub.wait_for(lambda s: s.accepted + len(s.rejections) >= total, 60), \
            (sub.state.accepted, len(sub.state.rejections))
        assert sub.state.accepted == 1
        assert list(sub.state.latest.values()) == [good]
        assert len(sub.state.rejections) == total - 1
        print(f"control garbage tried: {len(garbage)} kinds x 2 + 1 replay; rejected "
              f"{dict(sub.state.rejected)}; accepted {sub.state.accepted}")


def _raise_topic_limit(settings_: Any, topic: str, limit: int) -> None:
    admin = AdminClient(settings_.librdkafka())
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"max.message.bytes": str(limit)})
    for fut in admin.alter_configs([res]).values():
        fut.result()


@pytest.mark.parametrize("size", [900_000, 10 * 1024 * 1024])
def test_oversized_record_reaches_the_dlq(size: int, broker: str, tmp_path: Path) -> None:
    """A record bigger than ROLLGUARD_MAX_EVENT_BYTES goes to the DLQ as 'record too large' and the worker
    carries on. 10 MB needs the input topic's max.message.bytes (and the producer's message.max.bytes)
    raised; the DLQ topic keeps the broker default (~1 MB)."""
    settings_ = fresh_settings(broker)
    keys = Keys()
    create_topics(settings_)
    _raise_topic_limit(settings_, settings_.topics.pairs, 12 * 1024 * 1024)
    good = list(Traffic(seed=8).events(200))
    with WorkerProc(settings_, keys, tmp_path, extra_env={"ROLLGUARD_MAX_EVENT_BYTES": "262144"}) as worker:
        lag = GroupLag(settings_)
        with EventProducer(settings_, config={"message.max.bytes": 12 * 1024 * 1024}) as p:
            for ev in good[:200]:
                assert p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
            p.send_raw(settings_.topics.pairs, b"huge", b"{" + b" " * (size - 2) + b"}")
            for ev in list(Traffic(seed=9).events(100)):
                assert p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
            assert p.flush(60) == 0 and p.failed == 0, p.last_error
        try:
            wait_until(lambda: lag.drained() or "Crashed reason" in worker.log_text(), 90,
                       "the worker to drain past the oversized record (or its agent to crash)")
        finally:
            lag.close()
        assert "Crashed reason" not in worker.log_text(), worker.log_text()[-2000:]
        assert worker.alive()
        dlq = [decode_dlq(v) for _, v in read_all(settings_, settings_.topics.dlq) if v]
    assert [d.reason.split(":")[0] for d in dlq] == ["record too large"]
    assert dlq[0].size == size

"""The ingest loop's protocol without a broker: fakes stand in for librdkafka, a scripted fold for the pipeline.

What must hold: a batch is committed only after every emit of it was delivered, at last + 1 per partition but
never past an outcome still waiting for its response; a delivery failure commits nothing and is fatal; recovery
runs before the first batch and on every assignment; a stop finishes the batch and closes the consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

import rollguard.streams.recovery as recovery
from rollguard.config import KafkaSecurity, Settings, Topics
from rollguard.pipeline import Emit
from rollguard.streams import ingest
from rollguard.streams.ingest import (
    DeliveryError,
    IngestLoop,
    commit_offsets,
    consumer_config,
    ingest_group_id,
    producer_config,
)

SETTINGS = Settings(topics=Topics(prefix="u"), app_id="u-worker", flush_interval_s=0.01)
PAIRS, OUT = SETTINGS.topics.pairs, SETTINGS.topics.outcomes


# ------------------------------------------------------------------------------------------ pure parts
def test_commit_is_next_offset_per_partition() -> None:
    assert commit_offsets({"p:0": (0, 9), "p:1": (5, 5)}, {}) == {"p:0": 10, "p:1": 6}


def test_waiting_outcome_holds_its_partition_only() -> None:
    assert commit_offsets({"o:0": (0, 9), "o:1": (0, 9)}, {"o:0": 4}) == {"o:0": 4, "o:1": 10}


def test_waiting_entry_below_this_assignment_does_not_hold() -> None:
    """Left over from an earlier ownership of the partition: committing back there would only re-read."""
    assert commit_offsets({"o:0": (20, 29)}, {"o:0": 4}) == {"o:0": 20}


def test_waiting_entry_past_what_was_read_is_ignored() -> None:
    assert commit_offsets({"o:0": (0, 9)}, {"o:0": 50, "o:7": 1}) == {"o:0": 10}


def test_client_configs() -> None:
    sec = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                        sasl_password="p")  # type: ignore[arg-type]
    s = Settings(security=sec, app_id="a")
    prod = producer_config(s)
    assert prod["partitioner"] == "murmur2_random" and prod["acks"] == "all" and prod["enable.idempotence"] is True
    assert prod["security.protocol"] == "SASL_PLAINTEXT" and prod["sasl.username"] == "u"
    cons = consumer_config(s, ingest_group_id(s), session_timeout_s=6, heartbeat_s=1)
    assert cons["group.id"] == "a-ingest" and cons["enable.auto.commit"] is False
    assert cons["auto.offset.reset"] == "earliest" and cons["partition.assignment.strategy"] == "range"
    assert cons["session.timeout.ms"] == 6000 and cons["heartbeat.interval.ms"] == 1000
    assert cons["sasl.password"] == "p"


# ------------------------------------------------------------------------------------------ fakes
class Msg:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None = b"x",
                 error: KafkaError | None = None) -> None:
        self._t, self._p, self._o, self._v, self._e = topic, partition, offset, value, error
        self._ts = (0, 0)  # TIMESTAMP_NOT_AVAILABLE unless set with at()

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes:
        return b"k"

    def error(self) -> KafkaError | None:
        return self._e

    def timestamp(self) -> tuple[int, int]:
        return self._ts

    def at(self, ts_ms: int) -> Msg:
        self._ts = (1, ts_ms)  # TIMESTAMP_CREATE_TIME
        return self


class World:
    """Everything the fakes did, in order, plus the script they follow."""

    def __init__(self, batches: list[list[Msg]], assignment: list[tuple[str, int]], *,
                 fail_delivery: bool = False) -> None:
        self.batches = batches
        self.assignment = assignment
        self.fail_delivery = fail_delivery
        self.log: list[tuple[str, Any]] = []
        self.loop: IngestLoop | None = None
        self.high: dict[tuple[str, int], int] = {}  # cached high watermarks


class FakeConsumer:
    world: World

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.cbs: dict[str, Callable[..., None]] = {}
        self.assigned = False

    def subscribe(self, topics: list[str], **cbs: Callable[..., None]) -> None:
        self.world.log.append(("subscribe", tuple(topics)))
        self.cbs = cbs

    def _tps(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.world.assignment]

    def consume(self, num_messages: int, timeout: float) -> list[Msg]:
        if not self.assigned:
            self.assigned = True
            self.cbs["on_assign"](self, self._tps())
        if not self.world.batches:
            assert self.world.loop is not None
            self.world.loop.stop()
            return []
        return self.world.batches.pop(0)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert asynchronous is False
        self.world.log.append(("commit", {(tp.topic, tp.partition): tp.offset for tp in offsets}))
        return offsets

    def close(self) -> None:
        self.cbs["on_revoke"](self, self._tps())
        self.world.log.append(("close", None))

    def pause(self, tps: list[TopicPartition]) -> None:
        self.world.log.append(("pause", [(tp.topic, tp.partition) for tp in tps]))

    def resume(self, tps: list[TopicPartition]) -> None:
        self.world.log.append(("resume", [(tp.topic, tp.partition) for tp in tps]))

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached  # never a request per batch
        return 0, self.world.high.get((tp.topic, tp.partition), -1001)


class FakeProducer:
    world: World

    def __init__(self, conf: dict[str, Any]) -> None:
        self.pending: list[tuple[str, Callable[..., None]]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callable[..., None]) -> None:
        self.world.log.append(("produce", topic))
        self.pending.append((topic, on_delivery))

    def flush(self, timeout: float) -> int:
        for topic, cb in self.pending:
            err = KafkaError(KafkaError._MSG_TIMED_OUT) if self.world.fail_delivery else None
            self.world.log.append(("delivered", topic if err is None else f"FAILED {topic}"))
            cb(err, Msg(topic, 0, 0))
        self.pending.clear()
        return 0

    def poll(self, timeout: float) -> int:
        return self.flush(timeout)


class ScriptedFold:
    """Emits a DLQ record for value b"bad", one partial per flush; ``waiting`` is what waiting_outcomes says."""

    def __init__(self, waiting: dict[str, int] | None = None) -> None:
        self.waiting = waiting or {}
        self.folded: list[tuple[str, int, int]] = []

    def process(self, raw: bytes | None, *, topic: str, partition: int, offset: int,
                key: bytes | None = None) -> list[Emit]:
        self.folded.append((topic, partition, offset))
        return [Emit("dlq", key, b"d")] if raw == b"bad" else []

    def flush(self) -> list[Emit]:
        return [Emit("partials", b"feature", b"p")]

    def waiting_outcomes(self) -> dict[str, int]:
        return dict(self.waiting)


def run_loop(monkeypatch: pytest.MonkeyPatch, world: World, fold: Any) -> tuple[IngestLoop, list[BaseException]]:
    FakeConsumer.world = FakeProducer.world = world
    monkeypatch.setattr(ingest, "Consumer", FakeConsumer)
    monkeypatch.setattr(ingest, "Producer", FakeProducer)
    monkeypatch.setattr(recovery, "recover_ingest",
                        lambda settings, fold, *, group_id: world.log.append(("recover", group_id)))
    fatal: list[BaseException] = []
    loop = IngestLoop(SETTINGS, fold, group_id=ingest_group_id(SETTINGS), on_fatal=fatal.append)
    world.loop = loop
    loop.run()  # in this thread: the fakes stop it when their script ends
    return loop, fatal


ASSIGN = [(PAIRS, 0), (PAIRS, 1), (OUT, 0)]


# ------------------------------------------------------------------------------------------ protocol
def test_commit_follows_delivery_of_every_emit(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World([[Msg(PAIRS, 0, 0), Msg(PAIRS, 0, 1, b"bad"), Msg(OUT, 0, 7)], [Msg(PAIRS, 1, 3)]], ASSIGN)
    loop, fatal = run_loop(monkeypatch, world, ScriptedFold())
    assert not fatal and loop.batches == 2
    kinds = [k for k, _ in world.log]
    assert kinds == ["recover", "subscribe", "recover",  # start-up, then the assignment
                     "produce", "produce", "delivered", "delivered", "commit",  # DLQ record + partial, then commit
                     "produce", "delivered", "commit", "close"]
    commits = [v for k, v in world.log if k == "commit"]
    assert commits[0] == {(PAIRS, 0): 2, (OUT, 0): 8}
    assert commits[1] == {(PAIRS, 1): 4}  # unchanged partitions are not committed again


def test_delivery_failure_commits_nothing_and_ends_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World([[Msg(PAIRS, 0, 0)], [Msg(PAIRS, 0, 1)]], ASSIGN, fail_delivery=True)
    fold = ScriptedFold()
    _loop, fatal = run_loop(monkeypatch, world, fold)
    assert len(fatal) == 1 and isinstance(fatal[0], DeliveryError)
    assert not [v for k, v in world.log if k == "commit"]
    assert ("close", None) not in world.log  # no orderly leave: nothing may be committed on the way out
    assert fold.folded == [(PAIRS, 0, 0)]  # the next batch was never read


def test_waiting_outcome_holds_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    fold = ScriptedFold(waiting={f"{OUT}:0": 5})
    world = World([[Msg(OUT, 0, 3), Msg(OUT, 0, 4), Msg(OUT, 0, 5), Msg(OUT, 0, 6), Msg(PAIRS, 0, 9)]], ASSIGN)
    run_loop(monkeypatch, world, fold)
    assert [v for k, v in world.log if k == "commit"] == [{(OUT, 0): 5, (PAIRS, 0): 10}]


def test_released_outcome_is_committed_without_new_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the response arrives the hold goes; the outcomes partition moves on even if it got nothing new."""
    fold = ScriptedFold(waiting={f"{OUT}:0": 1})
    world = World([[Msg(OUT, 0, 0), Msg(OUT, 0, 1)], [Msg(PAIRS, 0, 0)]], ASSIGN)
    real_process = fold.process

    def process(raw: bytes | None, **kw: Any) -> list[Emit]:
        if kw["topic"] == PAIRS:
            fold.waiting = {}
        return real_process(raw, **kw)

    fold.process = process  # type: ignore[method-assign]
    run_loop(monkeypatch, world, fold)
    assert [v for k, v in world.log if k == "commit"] == [{(OUT, 0): 1}, {(OUT, 0): 2, (PAIRS, 0): 1}]


def test_records_of_partitions_not_assigned_are_not_folded(monkeypatch: pytest.MonkeyPatch) -> None:
    fold = ScriptedFold()
    world = World([[Msg(PAIRS, 0, 0), Msg(PAIRS, 3, 0), Msg(OUT, 0, 0, error=KafkaError(KafkaError._PARTITION_EOF))]],
                  ASSIGN)
    run_loop(monkeypatch, world, fold)
    assert fold.folded == [(PAIRS, 0, 0)]
    assert [v for k, v in world.log if k == "commit"] == [{(PAIRS, 0): 1}]


def test_fold_without_waiting_outcomes_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    class Plain(ScriptedFold):
        waiting_outcomes = None  # type: ignore[assignment]

    world = World([[Msg(OUT, 0, 0)]], ASSIGN)
    _loop, fatal = run_loop(monkeypatch, world, Plain())
    assert not fatal and [v for k, v in world.log if k == "commit"] == [{(OUT, 0): 1}]


def test_outcomes_running_ahead_of_their_pairs_are_paused_until_the_pairs_catch_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = World([[Msg(PAIRS, 0, 0).at(1_000), Msg(OUT, 0, 0).at(9_000)],  # outcomes 8 s ahead, pairs not done
                   [Msg(PAIRS, 0, 1).at(8_800)],  # still behind the outcomes' time: stays paused
                   [Msg(PAIRS, 0, 2).at(9_000)],  # caught up: resumed
                   [Msg(OUT, 0, 1).at(20_000), Msg(PAIRS, 0, 3).at(9_100)]],  # ahead, but pairs read to the end
                  ASSIGN)
    world.high = {(PAIRS, 0): 4, (OUT, 0): 2}
    loop, fatal = run_loop(monkeypatch, world, ScriptedFold())
    assert not fatal
    assert [(k, v) for k, v in world.log if k in ("pause", "resume")] == [("pause", [(OUT, 0)]),
                                                                        ("resume", [(OUT, 0)])]
    assert loop.align_pauses == 1

"""The ingest loop on the real broker: partials land where the analysis expects them, offsets are committed to
the end, and a dying loop ends its process with a non-zero status."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from rollguard.client import EventProducer
from rollguard.pipeline import IngestFold, SpecBook
from rollguard.simulate import Traffic
from rollguard.spec import load_specs
from rollguard.streams.ingest import EXIT_INGEST_DIED, MAX_BATCH, IngestLoop, ingest_group_id, producer_config
from rollguard.topics import create_topics, delete_topics
from tests.integration.conftest import SPEC
from tests.integration.harness import fresh_settings, input_lag, read_all, wait_until

FEATURES = ["support-reply", "search-rerank", "summarise", "triage", "draft-email", "code-review", "faq"]


def test_keyed_records_land_in_the_java_default_partition(broker: str) -> None:
    """librdkafka's default partitioner (consistent_random, CRC32) would scatter a feature's partials across
    partitions; the analysis and its ``use_partitioner`` tables need Java's murmur2 choice, as aiokafka makes it."""
    settings = fresh_settings()
    topic = f"{settings.topics.prefix}.partition-check"
    admin = AdminClient(settings.librdkafka())
    admin.create_topics([NewTopic(topic, num_partitions=7, replication_factor=-1)])[topic].result()
    try:
        prod = Producer(producer_config(settings))
        landed: dict[bytes, int] = {}

        def on_delivery(err: object, msg: object) -> None:
            assert err is None, err
            landed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

        keys = [f"feature-{i}-{uuid.uuid4().hex[:6]}".encode() for i in range(200)] + [f.encode() for f in FEATURES]
        for k in keys:
            prod.produce(topic, value=b"v", key=k, on_delivery=on_delivery)
        assert prod.flush(30) == 0
        java = DefaultPartitioner()
        expected = {k: java(k, list(range(7)), list(range(7))) for k in keys}
        assert landed == expected
        assert len(set(landed.values())) == 7
    finally:
        admin.delete_topics([topic])


def test_loop_counts_everything_and_publishes_by_feature(broker: str) -> None:
    settings = fresh_settings()
    create_topics(settings)
    specs = SpecBook(load_specs(SPEC))
    fold = IngestFold(specs)
    fatal: list[BaseException] = []
    loop = IngestLoop(settings, fold, group_id=ingest_group_id(settings), on_fatal=fatal.append)
    try:
        sent = 0
        with EventProducer(settings) as p:
            for i, f in enumerate(FEATURES):
                for ev in Traffic(feature=f, seed=100 + i).events(300):
                    ok = p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
                    assert ok
                    sent += 1
            assert p.flush(30) == 0
        loop.start()
        wait_until(lambda: input_lag(settings) == 0 or bool(fatal), 120, "the loop to commit the input's end")
        assert not fatal, fatal
        loop.stop()
        assert not loop.alive
        c = fold.counters
        assert c.records == sent and c.responses == 300 * len(FEATURES) and c.outcomes_joined == c.outcomes
        partials = read_all(settings, settings.topics.partials)
        java = DefaultPartitioner()
        parts = list(range(settings.partitions))
        by_feature: dict[str, set[int]] = {}
        requests = 0
        for key, value in _with_partitions(settings):
            body = orjson.loads(value)
            assert key == body["feature"].encode()
            by_feature.setdefault(body["feature"], set()).add(key and java(key, parts, parts))
            requests += sum(e[3]["requests"] for e in body["entries"])
        assert requests == 300 * len(FEATURES) and len(partials) >= len(FEATURES)
        for feature, where in by_feature.items():
            assert where == {java(feature.encode(), parts, parts)}, feature
    finally:
        loop.stop()
        delete_topics(settings)


def test_backlog_outcomes_are_kept_near_their_pairs_without_loss(broker: str) -> None:
    """A backlog as after an outage (record timestamps spread over minutes): outcome partitions are paused while
    ahead of their pairs and resumed; librdkafka's pause/resume must neither skip nor repeat a record."""
    settings = fresh_settings()
    create_topics(settings)
    events = list(Traffic(seed=4).events(30_000))
    prod = Producer(settings.librdkafka(**{"linger.ms": 5}))
    t0 = int(time.time() * 1000) - 10 * 60_000
    t = settings.topics
    for i, ev in enumerate(events):
        topic = t.pairs if ev["schema"].startswith("rollguard.response") else t.outcomes
        while True:
            try:
                prod.produce(topic, orjson.dumps(ev), ev["request_id"].encode(), timestamp=t0 + i * 10)
                break
            except BufferError:
                prod.poll(0.05)
    assert prod.flush(30) == 0
    fold = IngestFold(SpecBook(load_specs(SPEC)))
    peak = 0
    real = fold.process

    def process(raw: bytes | None, **kw: Any) -> list[Any]:
        nonlocal peak
        peak = max(peak, fold.counters.outcomes_pending)
        return real(raw, **kw)

    fold.process = process  # type: ignore[method-assign]
    fatal: list[BaseException] = []
    loop = IngestLoop(settings, fold, group_id=ingest_group_id(settings), recover=False, on_fatal=fatal.append)
    try:
        loop.start()
        wait_until(lambda: input_lag(settings) == 0 or bool(fatal), 120, "the loop to commit the input's end")
        loop.stop()
        assert not fatal, fatal
        c = fold.counters
        assert (c.records, c.responses, c.outcomes, c.outcome_duplicates) == (len(events), 30_000, 30_000, 0)
        assert c.outcomes_joined == 30_000
        assert loop.align_pauses > 0
        print(f"peak outcomes waiting {peak}, pauses {loop.align_pauses}")
        # bounded by what one batch can read ahead, whatever the backlog; unaligned, outcome partitions (smaller
        # records than responses) run far ahead of their pairs: 22,000-24,000 waiting on a 100k-record backlog
        assert peak <= MAX_BATCH
    finally:
        loop.stop()
        delete_topics(settings)


def _with_partitions(settings: object) -> list[tuple[bytes, bytes]]:
    """Partials as (key, value), checked against the partition they were read from."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    s = settings  # type: ignore[assignment]
    topic = s.topics.partials  # type: ignore[attr-defined]
    c = Consumer(s.librdkafka(**{"group.id": f"read-{uuid.uuid4().hex}"}))  # type: ignore[attr-defined]
    java = DefaultPartitioner()
    try:
        n = s.partitions  # type: ignore[attr-defined]
        out = []
        for p in range(n):
            _lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi == 0:
                continue
            c.assign([TopicPartition(topic, p, OFFSET_BEGINNING)])
            got = 0
            while got < hi:
                m = c.poll(10)
                assert m is not None and m.error() is None
                assert m.partition() == java(m.key(), list(range(n)), list(range(n)))
                out.append((m.key(), m.value()))
                got += 1
        return out
    finally:
        c.close()


def test_a_dying_loop_ends_its_process(broker: str) -> None:
    """Never a worker that analyses but no longer ingests: the default on_fatal exits non-zero."""
    settings = fresh_settings()
    create_topics(settings)
    try:
        with EventProducer(settings) as p:
            assert p.send_response(next(iter(Traffic(seed=1).events(1))))
            assert p.flush(30) == 0
        code = textwrap.dedent(f"""
            import threading
            from rollguard.config import Settings, Topics
            from rollguard.streams.ingest import IngestLoop

            class Broken:
                def process(self, *a, **k):
                    raise RuntimeError("a bug in the fold")

            s = Settings(bootstrap={settings.bootstrap!r}, topics=Topics(prefix={settings.topics.prefix!r}),
                         app_id={settings.app_id!r})
            IngestLoop(s, Broken(), group_id={ingest_group_id(settings)!r}, recover=False).start()
            threading.Event().wait(120)  # the main thread would live on; the loop's death must end the process
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == EXIT_INGEST_DIED, proc.stderr[-2000:]
        assert "ingest loop died" in proc.stderr and "a bug in the fold" in proc.stderr
    finally:
        delete_topics(settings)


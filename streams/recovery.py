"""Start-up recovery for ingest: which input offsets are already in published partials.

Faust commits ingest offsets a little after the partials are out, so a worker killed in between re-reads
some records. Reading back the tail of the partials topic tells, per feature and input partition, the last
offset already counted; ``IngestFold.already_published`` then skips those records instead of counting them
twice. (The analysis would count such overlaps; this removes them at the source.)
"""

from __future__ import annotations

import logging
import time

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from rollguard.config import Settings

log = logging.getLogger(__name__)

#: Partials read back per partition: each flush writes one per active feature, so this covers well over a
#: minute of history for dozens of features, far more than the commit lag it has to bridge.
TAIL = 20_000


def published_offsets(settings: Settings, *, tail: int = TAIL, timeout: float = 15.0) -> dict[str, dict[str, int]]:
    """``{feature: {"topic:partition": last offset in a published partial}}`` from the partials topic tail."""
    topic = settings.topics.partials
    c = Consumer(settings.librdkafka(**{"group.id": f"{settings.app_id}-recovery-{time.time_ns()}",
                                         "enable.auto.commit": False, "enable.partition.eof": True}))
    out: dict[str, dict[str, int]] = {}
    try:
        md = c.list_topics(topic, timeout=timeout)
        if topic not in md.topics or md.topics[topic].error:
            return out
        assign = []
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if hi > lo:
                assign.append(TopicPartition(topic, p, max(lo, hi - tail)))
        if not assign:
            return out
        c.assign(assign)
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(done) < len(assign) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(m.partition() or 0)
                continue
            try:
                body = orjson.loads(m.value() or b"")
                feature, source = body["feature"], body.get("source") or {}
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # control requests share the topic; anything else is not ours to judge here
            mine = out.setdefault(feature, {})
            for tp, (_lo, hi) in source.items():
                if hi > mine.get(tp, -1):
                    mine[tp] = hi
    finally:
        c.close()
    log.info("ingest recovery: published offsets for %d feature(s)", len(out))
    return out

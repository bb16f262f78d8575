"""Recovery for ingest: which input records published partials already hold, and recent responses to join.

Ingest commits its input offsets a little after the partials are out, so a worker killed in between re-reads
some records. Reading back the tail of the partials topic tells, per feature and input partition, the last
response offset already counted, and exactly which outcome offsets were joined; ``IngestFold.already_published``
then skips those records instead of counting them twice. (The analysis would count such overlaps; this
removes them at the source.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from rollguard.config import Settings
from rollguard.pipeline import IngestFold, expand_runs
from rollguard.topics import read_to_end

log = logging.getLogger(__name__)

#: Partials read back per partition: each flush writes one per active feature, so this covers well over a
#: minute of history for dozens of features, far more than the commit lag it has to bridge.
TAIL = 20_000


@dataclass
class Published:
    """What the partials topic's tail says is counted: response marks per feature, joined outcome offsets."""

    marks: dict[str, dict[str, int]] = field(default_factory=dict)  # feature -> "topic:partition" -> offset
    joined: dict[str, set[int]] = field(default_factory=dict)  # "topic:partition" -> outcome offsets


def committed_offsets(settings: Settings, group_id: str, topics: list[str], *,
                      timeout: float = 15.0) -> dict[str, int]:
    """``{"topic:partition": committed offset}`` of ``group_id`` (partitions without a commit are left out)."""
    c = Consumer(settings.librdkafka(**{"group.id": group_id, "enable.auto.commit": False}))
    out: dict[str, int] = {}
    try:
        wanted = []
        for topic in topics:
            md = c.list_topics(topic, timeout=timeout)
            if topic in md.topics and not md.topics[topic].error:
                wanted += [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        if wanted:
            for tp in c.committed(wanted, timeout=timeout):
                if tp.offset is not None and tp.offset >= 0:
                    out[f"{tp.topic}:{tp.partition}"] = tp.offset
    finally:
        c.close()
    return out


def published_offsets(settings: Settings, *, committed: Mapping[str, int] | None = None, tail: int = TAIL,
                      timeout: float = 15.0) -> Published:
    """Response marks and joined outcome offsets from the partials topic tail. Outcome offsets below the
    group's ``committed`` offset of their partition are dropped (they are never read again)."""
    committed = committed or {}
    out = Published()
    for m in read_to_end(settings, settings.topics.partials, tail=tail, timeout=timeout):
        try:
            body = orjson.loads(m.value() or b"")
            feature, source = body["feature"], body.get("source") or {}
            joined = body.get("joined") or {}
            mine = out.marks.setdefault(feature, {})
            for tp, (_lo, hi) in source.items():
                if hi > mine.get(tp, -1):
                    mine[tp] = hi
            for tp, runs in joined.items():
                out.joined.setdefault(tp, set()).update(expand_runs(runs, at_least=committed.get(tp, 0)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # control requests share the topic; anything else is not ours to judge here
    log.info("ingest recovery: published offsets for %d feature(s), %d joined outcome(s) not yet committed",
             len(out.marks), sum(len(v) for v in out.joined.values()))
    return out


#: How far back the pairs topic is replayed into the outcome join at start-up (outcomes older than their
#: response by more than this, arriving right after a restart, are orphaned and counted as such).
RECALL_S = 900.0
RECALL_LIMIT = 500_000


def recall_responses(settings: Settings, fold: IngestFold, *, group_id: str | None = None,
                     since_s: float = RECALL_S, limit: int = RECALL_LIMIT, timeout: float = 15.0) -> int:
    """Replay the recent pairs below the ingest group's committed offsets into ``fold``'s join (not counted).

    Records at or after the committed offset are read again by the worker itself, so the replay stops there.
    Every partition is replayed (assignment is not known yet); entries for partitions another worker owns
    are harmless and expire with the join TTL.
    """
    topic = settings.topics.pairs
    c = Consumer(settings.librdkafka(**{"group.id": group_id or settings.app_id, "enable.auto.commit": False,
                                         "enable.partition.eof": True}))
    recalled = 0
    try:
        md = c.list_topics(topic, timeout=timeout)
        if topic not in md.topics or md.topics[topic].error:
            return 0
        parts = list(md.topics[topic].partitions)
        committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts],
                                                                   timeout=timeout)}
        since_ms = int((time.time() - since_s) * 1000)
        starts = c.offsets_for_times([TopicPartition(topic, p, since_ms) for p in parts], timeout=timeout)
        plan = []
        for tp in starts:
            end = committed.get(tp.partition, -1)
            if end is None or end < 0 or tp.offset < 0 or tp.offset >= end:
                continue
            plan.append((TopicPartition(topic, tp.partition, tp.offset), end))
        if not plan:
            return 0
        c.assign([tp for tp, _ in plan])
        ends = {tp.partition: end for tp, end in plan}
        open_parts = set(ends)
        deadline = time.monotonic() + 4 * timeout
        while open_parts and recalled < limit and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                part = m.partition() or 0
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:  # type: ignore[union-attr]
                        open_parts.discard(part)
                    continue
                if part not in open_parts:
                    continue
                if (m.offset() or 0) >= ends[part]:
                    open_parts.discard(part)
                    continue
                recalled += fold.recall(m.value())
    finally:
        c.close()
    log.info("ingest recovery: %d recent responses recalled into the outcome join", recalled)
    return recalled


def recover_ingest(settings: Settings, fold: IngestFold, *, group_id: str) -> None:
    """Before consuming (and again whenever partitions are assigned): skip what published partials already
    hold, and re-learn recent responses for the outcome join. ``group_id`` is the ingest consumer group whose
    committed offsets say where reading resumes. A failure here costs exactness, never the worker."""
    try:
        t = settings.topics
        committed = committed_offsets(settings, group_id, [t.pairs, t.outcomes])
        published = published_offsets(settings, committed=committed)
        fold.already_published(published.marks, published.joined)
        recall_responses(settings, fold, group_id=group_id)
    except Exception:
        log.exception("ingest recovery failed; re-read records will be counted as overlaps instead")

"""Every topic rollguard uses, with its partitions and configs, created idempotently via AdminClient; and
reading a topic to its end (state that lives in a topic)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from rollguard.config import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    purpose: str = ""


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Pairs and outcomes share a partition count (co-partitioned by request_id for the join)."""
    t = settings.topics
    p = settings.partitions
    return [
        TopicSpec(t.pairs, p, {"retention.ms": str(7 * DAY_MS)}, "response events, key = request_id"),
        TopicSpec(t.outcomes, p, {"retention.ms": str(7 * DAY_MS)}, "outcome events, key = request_id"),
        TopicSpec(t.partials, p, {"retention.ms": str(1 * DAY_MS)}, "partial aggregates, key = feature"),
        TopicSpec(t.control, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                                 "segment.ms": str(3600 * 1000)}, "signed commands, key = flag[/scope]"),
        TopicSpec(t.rollouts, 1, {"cleanup.policy": "compact"}, "rollout specs, key = feature"),
        TopicSpec(t.alerts, 1, {"retention.ms": str(30 * DAY_MS)}, "alerts, key = feature"),
        TopicSpec(t.decisions, 1, {"retention.ms": str(365 * DAY_MS)}, "audit trail, key = feature"),
        TopicSpec(t.metrics, 1, {"retention.ms": str(30 * DAY_MS)}, "window snapshots, key = feature"),
        TopicSpec(t.dlq, 1, {"retention.ms": str(90 * DAY_MS)},
                  "RESTRICTED: raw payloads of bad records; ACL to the on-call group only"),
    ]


class KafkaAuthenticationError(KafkaException):
    """The broker refused our credentials (librdkafka's own exception only says "Broker transport failure")."""


class ClientErrors:
    """librdkafka ``error_cb`` that keeps the latest global errors, so a failed call can say *why*: a wrong
    SASL password otherwise surfaces only as a transport failure, with the reason on stderr."""

    def __init__(self) -> None:
        self.errors: list[KafkaError] = []

    def __call__(self, err: KafkaError) -> None:
        self.errors.append(err)
        del self.errors[:-20]

    def authentication(self) -> KafkaError | None:
        return next((e for e in reversed(self.errors) if e.code() == KafkaError._AUTHENTICATION), None)

    def explain(self, exc: KafkaException, settings: Settings) -> KafkaException:
        """``exc``, or a ``KafkaAuthenticationError`` naming the user and the broker's reason."""
        auth = self.authentication()
        if auth is None:
            return exc
        user = settings.security.sasl_username or "(none)"
        return KafkaAuthenticationError(KafkaError(KafkaError._AUTHENTICATION,
                                                   f"authentication as {user!r} at {settings.bootstrap} failed: "
                                                   f"{auth.str()}"))


def create_topics(settings: Settings, *, timeout: float = 30.0) -> dict[str, str]:
    """Create what is missing; report ``created`` / ``exists`` per topic. Raises on any other error."""
    errors = ClientErrors()
    admin = AdminClient(settings.librdkafka(error_cb=errors))
    specs = topic_specs(settings)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        admin.poll(0.5)  # error callbacks are served by poll(), not by the failed call
        raise errors.explain(exc, settings) from exc
    todo = [s for s in specs if s.name not in existing]
    result = {s.name: "exists" for s in specs if s.name in existing}
    if todo:
        futures = admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config) for s in todo],
            operation_timeout=timeout, request_timeout=timeout,
        )
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    result[name] = "exists"
                else:
                    raise
    _wait_for_metadata(admin, [s.name for s in specs], timeout)
    return result


def _wait_for_metadata(admin: AdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout).topics
        if all(n in md and not md[n].error and md[n].partitions for n in names):
            return
        if time.monotonic() > deadline:
            missing = [n for n in names if n not in md]
            raise TimeoutError(f"topics not visible after {timeout}s: {missing}")
        time.sleep(0.1)


def read_to_end(settings: Settings, topic: str, *, tail: int | None = None,
                timeout: float = 15.0) -> Iterator[Message]:
    """Every record of ``topic`` (or only the last ``tail`` of each partition) up to the end it had when the
    read began, in partition order; a throw-away group, nothing committed. Stops at ``timeout`` overall.
    For state kept in a topic (checkpoints, published partials) that a process reads once at start."""
    c = Consumer(settings.librdkafka(**{"group.id": f"{settings.app_id}-read-{time.time_ns()}",
                                         "enable.auto.commit": False, "enable.partition.eof": True}))
    try:
        md = c.list_topics(topic, timeout=timeout)
        if topic not in md.topics or md.topics[topic].error:
            return
        assign = []
        for p in md.topics[topic].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if hi > lo:
                assign.append(TopicPartition(topic, p, lo if tail is None else max(lo, hi - tail)))
        if not assign:
            return
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
            yield m
    finally:
        c.close()


def delete_topics(settings: Settings, *, timeout: float = 30.0) -> None:
    """For tests and demos on a private prefix only."""
    admin = AdminClient(settings.librdkafka())
    names = [s.name for s in topic_specs(settings)]
    existing = set(admin.list_topics(timeout=timeout).topics)
    names = [n for n in names if n in existing]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=timeout).values():
            with contextlib.suppress(KafkaException):
                fut.result()

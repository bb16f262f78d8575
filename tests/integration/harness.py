"""Shared helpers for integration tests on the real broker: unique topics, worker processes, waits."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from rollguard.config import Settings, Topics
from rollguard.demo import spawn_worker, stop_worker, worker_env
from rollguard.signing import generate_keypair
from rollguard.streams.ingest import ingest_group_id
from rollguard.topics import create_topics, read_to_end

BOOTSTRAP = os.environ.get("ROLLGUARD_BOOTSTRAP", "127.0.0.1:9092")


def fresh_settings(**kw: object) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(bootstrap=BOOTSTRAP, topics=Topics(prefix=prefix), app_id=f"{prefix}-worker", **kw)


class Keys:
    def __init__(self) -> None:
        self.key_id = "test"
        self.private, self.public = generate_keypair()


@contextmanager
def running_worker(settings: Settings, spec: Path, keys: Keys, log_dir: Path) -> Iterator[object]:
    create_topics(settings)
    env = worker_env(settings, keys.key_id, keys.private)
    env["ROLLGUARD_APP_ID"] = settings.app_id
    log = log_dir / f"worker-{time.time_ns()}.log"
    proc = spawn_worker(settings, spec, env, log)
    try:
        yield proc
    finally:
        stop_worker(proc)


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def input_lag(settings: Settings) -> int | None:
    """Unconsumed pairs/outcomes records of the worker's ingest loop (None until it has committed)."""
    return group_lag(settings, ingest_group_id(settings), [settings.topics.pairs, settings.topics.outcomes])


def group_lag(settings: Settings, group: str, topics: list[str]) -> int | None:
    """Unconsumed records of a consumer group on ``topics`` (None until the group has committed); the worker's
    ingest loop reads pairs/outcomes as ``ingest_group_id(settings)``, its Faust app the partials as ``app_id``."""
    c = Consumer(settings.librdkafka(**{"group.id": group, "enable.auto.commit": False}))
    try:
        md = c.list_topics(timeout=10)
        tps = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]
        committed = c.committed(tps, timeout=10)
        lag = 0
        for tp in committed:
            _lo, hi = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            if hi == 0:
                continue
            if tp.offset < 0:
                return None
            lag += hi - tp.offset
        return lag
    finally:
        c.close()


def read_all(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record now on ``topic`` (all partitions), as (key, value)."""
    return [(m.key(), m.value()) for m in read_to_end(settings, topic, timeout=30)]


def read_json(settings: Settings, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(v) for _, v in read_all(settings, topic) if v is not None]

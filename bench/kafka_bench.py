"""Shared helpers for the benchmarks that run on the real broker (bench/ingest.py, bench/reaction.py).

Also the entry point of the bare-Faust baseline process:

    python -m bench.kafka_bench faust-bare --bootstrap HOST:PORT --topics a,b --app-id ID --target N --out F

which consumes ``topics`` with a Faust agent that does nothing with its batches, and writes
``{"count", "first_batch", "t_first", "t_last"}`` (monotonic seconds) to ``F`` once ``N`` records arrived.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BOOTSTRAP = os.environ.get("ROLLGUARD_BOOTSTRAP", "127.0.0.1:9092")
SPEC = REPO / "rollguard" / "specs" / "support-reply.yaml"


# ------------------------------------------------------------------------------------------ reporting
def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A small markdown table; ``align`` is one char per column (l/r), default: first left, rest right."""
    align = align or ("l" + "r" * (len(header) - 1))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": cpu or platform.processor(), "python": platform.python_version(),
            "platform": platform.platform()}


def percentile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def write_json(name: str, data: dict[str, Any]) -> Path:
    import orjson

    path = RESULTS / f"{name}.json"  # name may hold a sub-directory, e.g. "quick/ingest"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return path


# ------------------------------------------------------------------------------------------ Kafka
def fresh_prefix(tag: str) -> str:
    return f"bench{tag}{uuid.uuid4().hex[:8]}"


def settings_for(prefix: str) -> Any:
    from rollguard.config import Settings, Topics

    return Settings(bootstrap=BOOTSTRAP, topics=Topics(prefix=prefix), app_id=f"{prefix}-worker")


def producer(settings: Any, **extra: Any) -> Any:
    from confluent_kafka import Producer

    conf = {"linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576, "acks": "all"}
    conf.update(extra)
    return Producer(settings.librdkafka(**conf))


def encode_events(events: Iterable[dict[str, Any]], settings: Any) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) per event: responses to ``pairs``, outcomes to ``outcomes``, key = request_id."""
    import orjson

    t = settings.topics
    out = []
    for ev in events:
        topic = t.pairs if ev["schema"].startswith("rollguard.response") else t.outcomes
        out.append((topic, ev["request_id"].encode(), orjson.dumps(ev)))
    return out


def produce_all(prod: Any, records: Sequence[tuple[str, bytes, bytes]], flush: bool = True) -> None:
    for topic, key, value in records:
        while True:
            try:
                prod.produce(topic, value, key)
                break
            except BufferError:
                prod.poll(0.05)
    if flush:
        left = prod.flush(60)
        if left:
            raise RuntimeError(f"{left} records not delivered")


def worker_groups(settings: Any, topics: Sequence[str]) -> dict[str, list[str]]:
    """Which consumer group of a worker reads each topic: pairs/outcomes the ingest loop's, the rest Faust's."""
    from rollguard.streams.ingest import ingest_group_id

    ingest = {settings.topics.pairs, settings.topics.outcomes}
    out: dict[str, list[str]] = {}
    for t in topics:
        out.setdefault(ingest_group_id(settings) if t in ingest else settings.app_id, []).append(t)
    return out


class GroupWatch:
    """Committed offsets of consumer groups (one long-lived client per group, so polling them is cheap).

    ``groups`` maps a group id to the topics it reads; ``GroupWatch.worker(settings, topics)`` picks the right
    group of a rollguard worker for each topic."""

    def __init__(self, settings: Any, groups: dict[str, list[str]]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._cs: list[tuple[Any, list[Any]]] = []
        for group, topics in groups.items():
            c = Consumer(settings.librdkafka(**{"group.id": group, "enable.auto.commit": False}))
            md = c.list_topics(timeout=10)
            self._cs.append((c, [TopicPartition(t, p) for t in topics for p in sorted(md.topics[t].partitions)]))
        self.tps = [tp for _c, tps in self._cs for tp in tps]

    @classmethod
    def worker(cls, settings: Any, topics: Sequence[str]) -> GroupWatch:
        return cls(settings, worker_groups(settings, topics))

    def ends(self) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition

        return {(tp.topic, tp.partition): c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                                  timeout=10)[1]
                for c, tps in self._cs for tp in tps}

    def committed(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): tp.offset for c, tps in self._cs for tp in c.committed(tps, timeout=10)}

    def lag(self, ends: dict[tuple[str, int], int] | None = None) -> int | None:
        """Unconsumed records up to ``ends`` (default: now); None while a non-empty partition has no commit."""
        ends = ends if ends is not None else self.ends()
        lag = 0
        for k, off in self.committed().items():
            hi = ends.get(k, 0)
            if hi == 0:
                continue
            if off < 0:
                return None
            lag += max(0, hi - off)
        return lag

    def wait_caught_up(self, ends: dict[tuple[str, int], int] | None, timeout: float, step: float = 0.02,
                       proc: subprocess.Popen[bytes] | None = None) -> float:
        """Block until lag == 0; returns the monotonic time it was first seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lag(ends) == 0:
                return time.monotonic()
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            time.sleep(step)
        raise TimeoutError(f"consumer group did not catch up within {timeout}s (lag {self.lag(ends)})")

    def close(self) -> None:
        for c, _tps in self._cs:
            c.close()


def read_topic(settings: Any, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record now on ``topic`` (all partitions) as confluent-kafka messages."""
    from rollguard.topics import read_to_end

    return list(read_to_end(settings, topic, timeout=timeout))


def delete_prefixed_topics(settings: Any, prefix: str) -> list[str]:
    """rollguard's own topics via ``rollguard.topics.delete_topics``, then anything else we caused under the
    (unique, random) prefix: Faust's changelog / assignor topics of our app ids."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from rollguard.topics import delete_topics

    assert len(prefix) >= 12 and prefix.startswith("bench"), prefix  # never a broad match
    delete_topics(settings)
    admin = AdminClient(settings.librdkafka())
    names = [n for n in admin.list_topics(timeout=10).topics if n.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):
                fut.result()
    return names


# ------------------------------------------------------------------------------------------ processes
class Proc:
    """A child process in its own session, with a log file and a private temp dir; stop() = TERM, then KILL."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"rollguard-bench-{name}-"))
        self.log_path = self.dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.p = subprocess.Popen(argv, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self._log.close()

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def worker_argv(spec: Path) -> list[str]:
    return [sys.executable, "-m", "rollguard.cli", "worker", "--spec", str(spec), "--loglevel", "warning"]


def spawn_worker(settings: Any, spec: Path, key_id: str, private_b64: str) -> Proc:
    from rollguard.demo import worker_env

    data = Path(tempfile.mkdtemp(prefix="rollguard-bench-data-"))
    env = worker_env(settings, key_id, private_b64)
    env.update({"ROLLGUARD_APP_ID": settings.app_id, "ROLLGUARD_DATA_DIR": str(data)})
    proc = Proc(worker_argv(spec), env, "worker")
    proc.extra_dirs = [data]  # type: ignore[attr-defined]
    return proc


def cleanup_proc(proc: Proc) -> None:
    proc.stop()
    for d in getattr(proc, "extra_dirs", []):
        shutil.rmtree(d, ignore_errors=True)
    proc.cleanup()


# ------------------------------------------------------------------------------------------ bare Faust
def faust_bare_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.kafka_bench faust-bare")
    ap.add_argument("--bootstrap", default=BOOTSTRAP)
    ap.add_argument("--topics", required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    import faust
    import orjson

    datadir = tempfile.mkdtemp(prefix="rollguard-bench-faust-")
    # the same consumer-side settings as rollguard.streams.app.create_app, so only the agent body differs
    app = faust.App(
        a.app_id, broker=f"kafka://{a.bootstrap}", store="memory://", topic_partitions=a.partitions,
        topic_replication_factor=1, processing_guarantee="at_least_once", broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest", web_enabled=False, stream_wait_empty=False, datadir=datadir,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    topic = app.topic(*a.topics.split(","), partitions=a.partitions, **raw)  # type: ignore[arg-type]
    st: dict[str, Any] = {"count": 0, "first_batch": 0, "t_first": None, "t_last": None, "done": False}

    @app.agent(topic)
    async def bare(stream: Any) -> None:
        async for batch in stream.take_events(5000, within=0.25):
            now = time.monotonic()
            if st["t_first"] is None:
                st["t_first"], st["first_batch"] = now, len(batch)
            st["count"] += len(batch)
            st["t_last"] = now
            if st["count"] >= a.target and not st["done"]:
                st["done"] = True
                tmp = a.out + ".tmp"
                Path(tmp).write_bytes(orjson.dumps({k: v for k, v in st.items() if k != "done"}))
                os.replace(tmp, a.out)

    from faust.worker import Worker

    sys.argv = [sys.argv[0], "worker"]
    try:
        Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "faust-bare":
        raise SystemExit(faust_bare_main(sys.argv[2:]))
    raise SystemExit("usage: python -m bench.kafka_bench faust-bare ...")

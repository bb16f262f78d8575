"""The Faust runtime of the analysis (topics, changelog-backed tables, timers), plus the ingest loop's thread.

Ingest is not a Faust agent (DESIGN.md draws one): Faust's consumer path measured at 0.03 of a raw
confluent-kafka consume here, so ``rollguard.streams.ingest.IngestLoop`` reads ``pairs``/``outcomes`` with a plain
confluent-kafka consumer (group ``<app_id>-ingest``) in a thread of this process, sharing the ``IngestFold``.

Processing guarantee: at-least-once, made safe by design rather than by Faust's ``exactly_once`` (which has
open duplicate bugs, faust-streaming #517/#323):

- ingest commits a batch's input offsets only after every partial (and DLQ record, alert) it produced has been
  delivered, and never past an outcome still waiting for its response, so a crash loses nothing; on start-up
  and on every assignment it reads the published partials back and skips re-read records they already hold;
  what is left re-read produces partials whose offset ranges the analysis recognises (``overlapping_partials``);
- analyze (a Faust agent on ``partials``) publishes a decision before checkpointing the feature's state; a crash
  in between re-publishes the same command (same deterministic ``command_id``, same ``seq``), which
  subscribers reject as a replay; a batch is acked only once its checkpoints are delivered (``drain_producer``:
  Faust's own flush may return before they are).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Iterable
from typing import Any

import faust
import orjson

from rollguard.config import Settings
from rollguard.pipeline import Analyzer, Emit, IngestFold, SpecBook
from rollguard.signing import Signer
from rollguard.streams.ingest import IngestLoop, ingest_group_id

log = logging.getLogger("rollguard.worker")

#: Partials per analysis batch at most (one checkpoint per touched feature per batch).
ANALYZE_BATCH = 500
#: Largest checkpoint the state table accepts (10,000 segments compress to about 1-2 MB).
MAX_STATE_BYTES = 16 * 1024 * 1024
#: Seconds between checkpoints of a feature's drift detectors (pickle ~0.4 MB, ~10 ms for the demo spec);
#: ``ROLLGUARD_DRIFT_CHECKPOINT_S`` overrides it. Revoked partitions and a clean stop checkpoint at once.
DRIFT_CHECKPOINT_S = 10.0


def drift_checkpoint_interval() -> float:
    """``ROLLGUARD_DRIFT_CHECKPOINT_S`` (seconds, >= 0; 0 checkpoints after every batch), else the default."""
    raw = os.environ.get("ROLLGUARD_DRIFT_CHECKPOINT_S", "").strip()
    if not raw:
        return DRIFT_CHECKPOINT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"ROLLGUARD_DRIFT_CHECKPOINT_S must be a number of seconds, not {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"ROLLGUARD_DRIFT_CHECKPOINT_S must be a finite number >= 0, not {raw!r}")
    return value


def create_app(settings: Settings, specs: SpecBook, signer: Signer | None, *, window_s: int = 60,
               recover: bool = True) -> faust.App:
    """Build the worker app; the agent and the ingest loop stay thin, the logic lives in ``rollguard.pipeline``.

    ``recover`` runs ingest recovery (``recover_ingest``) before the first batch and on every assignment."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=settings.security.faust_credentials(),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=MAX_STATE_BYTES,
        table_cleanup_interval=30.0,
        web_enabled=False,
        stream_wait_empty=False,
        datadir=settings.data_dir,
    )
    t = settings.topics
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    partials = app.topic(t.partials, partitions=settings.partitions, **raw)  # type: ignore[arg-type]
    outputs = {
        "dlq": app.topic(t.dlq, **raw), "alerts": app.topic(t.alerts, **raw),  # type: ignore[arg-type]
        "partials": partials, "control": app.topic(t.control, **raw),  # type: ignore[arg-type]
        "decisions": app.topic(t.decisions, **raw), "metrics": app.topic(t.metrics, **raw),  # type: ignore[arg-type]
    }
    # use_partitioner: a checkpoint goes to the partition of its feature key (as the partials do), whichever
    # event of a batch is current; large states (many segments) need more than Kafka's default 1 MB
    state_table = app.Table("rollout-state", partitions=settings.partitions, default=None, key_type=bytes,
                            value_type=bytes, use_partitioner=True,
                            extra_topic_configs={"max.message.bytes": str(MAX_STATE_BYTES)})
    # Faust derives a table's changelog codec from its key/value *types* (bytes -> "json"); our values are
    # orjson documents already, so the changelog carries them raw, both when writing and when recovering.
    state_table.key_serializer = "raw"  # type: ignore[attr-defined]  # on Table, not on the TableT protocol
    state_table.value_serializer = "raw"  # type: ignore[attr-defined]
    fold = IngestFold(specs, window_s=window_s, max_event_bytes=settings.max_event_bytes,
                      max_scan_chars=settings.max_scan_chars,
                      max_segments_per_feature=settings.max_segments_per_feature)
    analyzer = Analyzer(specs, signer=signer, window_s=window_s)
    checkpoints: dict[bytes, bytes] = {}
    # drift detectors (pickles, ~20 KB per scope and arm) in their own table, so `rollguard status` keeps
    # reading only FeatureRuntime documents from the rollout-state changelog
    drift_table = app.Table("drift-state", partitions=settings.partitions, default=None, key_type=bytes,
                            value_type=bytes, use_partitioner=True,
                            extra_topic_configs={"max.message.bytes": str(MAX_STATE_BYTES)})
    drift_table.key_serializer = "raw"  # type: ignore[attr-defined]
    drift_table.value_serializer = "raw"  # type: ignore[attr-defined]
    drift_saved: dict[bytes, float] = {}  # feature key -> monotonic time of the last drift checkpoint
    drift_part: dict[bytes, int] = {}  # feature key -> partition of its partials (what a rebalance moves)
    drift_every = drift_checkpoint_interval()
    app.rollguard_fold = fold  # type: ignore[attr-defined]
    app.rollguard_analyzer = analyzer  # type: ignore[attr-defined]

    async def publish(emits: Iterable[Emit]) -> None:
        """Send and wait for delivery, so the caller acks only what is safely out."""
        pending: list[Awaitable[Any]] = []
        for e in emits:
            pending.append(await outputs[e.kind].send(key=e.key, value=e.value))
        if pending:
            await asyncio.gather(*pending)

    follower = SpecFollower(settings, specs)

    # ingest: its own consumer group and thread (see rollguard.streams.ingest); started with the app, stopped
    # before Faust shuts down; the session timeout follows Faust's, so one setting governs fail-over
    ingest_loop = IngestLoop(settings, fold, group_id=ingest_group_id(settings), recover=recover,
                             session_timeout_s=app.conf.broker_session_timeout,
                             heartbeat_s=app.conf.broker_heartbeat_interval)
    app.rollguard_ingest = ingest_loop  # type: ignore[attr-defined]

    @app.task
    async def start_ingest() -> None:
        # specs published to the rollouts topic are in force before the first batch is folded
        try:
            await asyncio.get_running_loop().run_in_executor(None, follower.catch_up)
        except Exception:  # never a worker that does not ingest: the timer picks the specs up later
            log.exception("catching up the rollouts topic failed; ingest starts anyway")
        ingest_loop.start()

    @app.on_before_shutdown.connect
    async def stop_ingest(*_args: Any, **_kw: Any) -> None:
        """Finish the batch, commit and close (in an executor: the event loop keeps serving the analysis)."""
        await asyncio.get_running_loop().run_in_executor(None, ingest_loop.stop)

    @app.agent(partials)
    async def analyze(stream: faust.StreamT) -> None:
        # a batch of partials is merged, its decisions published, then each touched feature checkpointed once:
        # the batch is acked only after that (take_events acks after the loop body), so nothing is lost
        batches = stream.take_events(ANALYZE_BATCH, within=0.5)  # type: ignore[attr-defined]
        async for batch in batches:
            out: list[Emit] = []
            touched: set[bytes] = set()
            for event in batch:
                key: bytes = event.key or b""
                drift_part[key] = event.message.partition
                stored = state_table.get(key)
                if key not in touched and stored is not None and checkpoints.get(key) != stored:
                    analyzer.restore(key.decode(), stored)  # first sight, restart, or partition moved back
                    if key not in drift_saved:
                        analyzer.drift.restore(drift_table.get(key))
                out.extend(analyzer.apply(event.value))
                touched.add(key)
            await publish(out)
            for key in touched:
                rt = analyzer.features.get(key.decode())
                if rt is not None:
                    blob = rt.to_bytes()
                    state_table[key] = blob
                    checkpoints[key] = blob
                # detectors are checkpointed on a schedule, not per batch: a crash loses at most this long of
                # detector input (no new warm-up; open episodes survive)
                if time.monotonic() - drift_saved.get(key, float("-inf")) >= drift_every:
                    save_drift(key)
            # the checkpoints must be out before this batch is acked (after this body): otherwise a commit can
            # pass them, and a new owner of the partition restores a state without the batch but starts after it
            await drain_producer(app)

    def save_drift(key: bytes) -> bool:
        """Write one feature's detector state to ``drift-state`` (no-op for features without drift watch)."""
        feature = key.decode()
        if feature not in analyzer.drift.features:
            return False
        drift_table[key] = analyzer.drift.to_bytes(feature)
        drift_saved[key] = time.monotonic()
        return True

    def save_drift_of(keys: Iterable[bytes], why: str) -> None:
        saved = 0
        for key in keys:
            try:
                saved += save_drift(key)
            except Exception:  # a failed checkpoint must not crash the rebalance; the schedule retries
                log.exception("drift checkpoint of %r on %s failed", key, why)
        if saved:
            log.info("drift state of %d feature(s) checkpointed on %s", saved, why)

    @app.on_partitions_revoked.connect
    async def checkpoint_drift_on_revoke(*args: Any, **_kw: Any) -> None:
        """Checkpoint the detectors of features whose partials partitions are being revoked, before they move.

        Faust sends this signal from ``App._on_partitions_revoked`` after the table manager saw the revocation
        and the producer was flushed, before the new assignment: the drift table (``use_partitioner``) is still
        writable, without a current event. Only revoked features are written: a worker's copy of a feature it
        no longer owns may be older than the new owner's. Forgetting when they were saved makes the analyze
        agent restore the table's value if the partition comes back after another worker has moved it on.
        """
        revoked: set[Any] = set(args[1]) if len(args) > 1 else set()  # called as (app, revoked, signal=...)
        gone = {tp.partition for tp in revoked if tp.topic == t.partials}
        keys = [k for k, p in drift_part.items() if p in gone]
        save_drift_of(keys, f"revocation of {t.partials} partitions {sorted(gone)}")
        for k in keys:
            drift_saved.pop(k, None)
            drift_part.pop(k, None)
        if keys:
            await drain_producer(app)

    @app.on_before_shutdown.connect
    async def checkpoint_drift_on_stop(*_args: Any, **_kw: Any) -> None:
        """A clean stop (SIGTERM) checkpoints every feature this worker holds; Faust flushes the producer next."""
        save_drift_of(list(drift_part), "shutdown")

    @app.timer(interval=1.0)
    async def follow_specs() -> None:
        """Pick up specs published with `rollguard spec apply` (every worker reads the whole topic)."""
        follower.poll()

    @app.timer(interval=30.0)
    async def report() -> None:
        c = fold.counters
        log.info("ingest: %d records, %d responses, %d outcomes (%d joined, %d pending, %d orphaned), %d DLQ, "
                 "%d critical alerts, %d shadow pairs, limits hit: %d segment overflow, %d scans truncated",
                 c.records, c.responses, c.outcomes, c.outcomes_joined, c.outcomes_pending, c.orphan_outcomes,
                 c.dlq, c.critical_alerts, c.shadow_pairs, c.segment_overflow, c.scan_truncated)

    if settings.metrics_port:
        from rollguard.metrics import serve

        serve(fold, analyzer, settings.metrics_port)
    return app


async def drain_producer(app: faust.App, *, warn_after_s: float = 10.0) -> None:
    """Wait until everything sent so far (table changelog writes included) is handed to the client and delivered.

    Faust's ``ProducerBuffer.flush`` returns, without an error, once no message went out for 0.1 s, and
    ``Producer.flush`` (which Faust also calls before committing) relies on it. With the ingest thread sharing the
    interpreter, the buffer's sender can stall longer than that; measured in test_rebalance: a checkpoint written
    before the ack of its partial reached the changelog after the partial's offset was committed, and the new
    owner of the partition restored a state without that partial while starting after it (200 responses and
    200 outcomes lost). So: drain the buffer until it is empty, then flush the client."""
    buffer = app.producer.buffer
    t0 = time.monotonic()
    warned = False
    while buffer.size and not app.should_stop:
        await buffer.flush()
        if not warned and time.monotonic() - t0 > warn_after_s:
            warned = True
            log.warning("producer buffer not drained after %.0fs (%d waiting); the batch stays unacked",
                        warn_after_s, buffer.size)
    await app.producer.flush()


class SpecFollower:
    """Reads the compacted rollouts topic (non-blocking polls from a timer) into the worker's SpecBook."""

    def __init__(self, settings: Settings, specs: SpecBook) -> None:
        self.settings = settings
        self.specs = specs
        self._consumer: Any = None
        self._lock = threading.Lock()  # catch_up (an executor thread) and the timer's poll share the consumer

    def _open(self) -> Any:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        if self._consumer is None:
            conf = self.settings.librdkafka(**{"group.id": f"{self.settings.app_id}-specs-{id(self)}",
                                               "enable.auto.commit": False})
            self._consumer = Consumer(conf)
            self._consumer.assign([TopicPartition(self.settings.topics.rollouts, 0, OFFSET_BEGINNING)])
        return self._consumer

    def poll(self) -> int:
        if not self._lock.acquire(blocking=False):
            return 0  # catching up: that reads everything this poll would
        try:
            return self._apply(self._open().consume(100, timeout=0))[0]
        finally:
            self._lock.release()

    def catch_up(self, timeout: float = 15.0) -> int:
        """Read the rollouts topic to the end it has now (blocking, up to ``timeout``): run before ingest starts,
        so specs published with `rollguard spec apply` judge the first batch, not only later ones."""
        from confluent_kafka import TopicPartition

        with self._lock:
            c = self._open()
            try:
                _lo, end = c.get_watermark_offsets(TopicPartition(self.settings.topics.rollouts, 0), timeout=timeout)
            except Exception:  # the timer's polls pick the specs up anyway
                log.exception("could not read the rollouts topic's end; specs are picked up by the timer")
                return 0
            applied, pos = 0, -1
            deadline = time.monotonic() + timeout
            while pos + 1 < end and time.monotonic() < deadline:
                n, last = self._apply(c.consume(100, timeout=0.2))
                applied, pos = applied + n, max(pos, last)
            return applied

    def _apply(self, msgs: list[Any]) -> tuple[int, int]:
        """Put new spec versions into the book; returns (specs applied, last offset seen or -1)."""
        from rollguard.spec import SpecError, parse_spec

        applied, last = 0, -1
        for msg in msgs:
            if msg.error():
                continue
            last = max(last, msg.offset())
            if not msg.value():
                continue
            try:
                spec = parse_spec(orjson.loads(msg.value()), source=f"{self.settings.topics.rollouts}@{msg.offset()}")
            except (SpecError, orjson.JSONDecodeError) as exc:
                log.error("refused a spec from the rollouts topic: %s", exc)
                continue
            current = self.specs.get(spec.feature)
            if current is None or current.version != spec.version:
                self.specs.put(spec)
                applied += 1
                log.info("rollout spec %s version %s is now in force", spec.feature, spec.version)
        return applied, last


def run_worker(app: faust.App, loglevel: str = "info") -> None:
    """Run the worker in this process until SIGTERM/SIGINT."""
    from faust.worker import Worker

    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

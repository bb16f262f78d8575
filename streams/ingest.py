"""Ingest: a plain confluent-kafka consumer loop in a thread of the worker process, around ``IngestFold``.

Why not a Faust agent (DESIGN.md draws one): measured by ``bench/ingest.py`` on the 2-core build machine, a Faust
agent that does nothing reads 8.4k records/s, 0.03 of a raw confluent-kafka consume (295k/s), so Faust's consumer
path capped the whole worker at 5k/s. This loop reads with librdkafka's batch ``consume`` and feeds the same
``IngestFold`` (and ``SpecBook``) objects the Faust app reports on; Faust keeps the analysis agent (partials
topic), its changelog-backed tables and its timers.

Protocol, one batch at a time (at-least-once; a crash at any point loses nothing):

1. ``consume`` until ``MAX_BATCH`` records or ``flush_interval_s``; ``fold.process`` each record (it never raises
   on data: bad records come back as DLQ emits);
2. ``fold.flush()``; produce every emit (idempotent, ``acks=all``, ``murmur2_random`` so a keyed partial lands in
   the partition Java/aiokafka would pick, which the analysis and its ``use_partitioner`` tables rely on) and
   wait for every delivery report; any delivery error raises, nothing is committed and the worker dies;
3. commit synchronously, per partition read, the next offset, but no further than the lowest outcome still
   waiting for its response (``fold.waiting_outcomes``), so that outcome is read again after a crash.

The batch is finished before the next ``consume``, and librdkafka serves rebalances inside ``consume``, so a
revocation never finds work in flight (``on_revoke`` still commits whatever is pending). Every non-empty
assignment re-runs ``recover_ingest`` first, which merges what the published partials already hold, so records
re-read after a crash or a hand-over are skipped. While catching up a backlog, an outcomes partition running ahead
of its pairs partition (record time) is paused until they catch up (``_align``), so outcomes do not pile up in the
join waiting for responses not yet read. Members use the range assignor: it gives a member the same
partition numbers of ``pairs`` and ``outcomes``, which the outcome join needs (both are keyed by request_id).
The consumer group is ``<app_id>-ingest``, not Faust's: Faust's own assignor protocol would answer a librdkafka
member of its group with INCONSISTENT_GROUP_PROTOCOL.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from rollguard.config import Settings
from rollguard.pipeline import Emit, IngestFold

log = logging.getLogger("rollguard.ingest")

#: Records per ingest batch at most; a batch is also cut every ``settings.flush_interval_s``.
MAX_BATCH = 5000
#: Largest record the producer sends (a partial of 10,000 segments is a few MB; the broker has its own limit).
MAX_PRODUCE_BYTES = 16 * 1024 * 1024
#: librdkafka gives up on a delivery after this long (then the batch fails and the worker restarts); below
#: ``max.poll.interval.ms`` (300 s), so a stuck delivery ends the process before the group evicts it.
DELIVERY_TIMEOUT_MS = 120_000
#: If no commit has succeeded for this long while there was something to commit, the loop gives up (a fresh
#: process reconnects); until then a failed commit is retried with the next batch (offsets only rise).
COMMIT_GIVE_UP_S = 120.0
#: An outcomes partition is paused once its newest record is this far (record time, ms) ahead of the newest record
#: read from the same-numbered pairs partition while that one has more to read, until the pairs reach the outcomes'
#: time or their end (see ``IngestLoop._align``). Live, outcomes trail their responses, so this never engages.
ALIGN_MS = 500
#: Bytes fetched per partition per request (librdkafka default 1 MB). Small fetches interleave partitions more
#: finely when a backlog is read (Faust's consumer took records round-robin by count): (1) one 1 MB fetch of
#: outcomes is ~4,000 records that run ahead of their pairs before ``_align`` can pause them (10-minute backlog:
#: peak outcomes waiting in the join 35,000 unaligned, 7,600 aligned with 1 MB fetches, 1,800-2,800 with 32-128 KB);
#: (2) partials then cover similar event times on every partition, which the drift detectors fed from their samples
#: need: the detector onset after a kill and restart (test_drift_restart) ranged 322-558 s with 128 KB (2 of 5 runs
#: over the test's 500 s bound), 192-303 s with 32 KB in 5 of 6 runs and once -76 s (all within; Faust's ingest
#: agent: ~201 s). The worker's rate did not measurably change (30-35k records/s, within this machine's noise).
FETCH_PARTITION_BYTES = 32_768
#: Exit status of a worker whose ingest thread died (a supervisor restarts it).
EXIT_INGEST_DIED = 70

TP = tuple[str, int]


def ingest_group_id(settings: Settings) -> str:
    """The ingest loop's consumer group (its committed offsets are where pairs/outcomes reading resumes)."""
    return f"{settings.app_id}-ingest"


def emit_topics(settings: Settings) -> dict[str, str]:
    """Topic of each ``Emit.kind`` (the same names the Faust app declares)."""
    t = settings.topics
    return {"dlq": t.dlq, "alerts": t.alerts, "partials": t.partials, "control": t.control,
            "decisions": t.decisions, "metrics": t.metrics}


def producer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka producer settings of the ingest loop (SASL/SSL from ``settings``); tests check the partitioner."""
    return settings.librdkafka(**{
        "acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random", "linger.ms": 5,
        "message.max.bytes": MAX_PRODUCE_BYTES, "message.timeout.ms": DELIVERY_TIMEOUT_MS,
    })


def consumer_config(settings: Settings, group_id: str, *, session_timeout_s: float | None = None,
                    heartbeat_s: float | None = None) -> dict[str, Any]:
    """librdkafka consumer settings: manual commits, earliest, range assignment (co-partitioned join), and fetches
    of at most ``FETCH_PARTITION_BYTES`` per partition so ``IngestLoop._align`` can keep outcomes near their pairs."""
    extra: dict[str, Any] = {
        "group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range", "max.partition.fetch.bytes": FETCH_PARTITION_BYTES,
    }
    if session_timeout_s:
        extra["session.timeout.ms"] = int(session_timeout_s * 1000)
    if heartbeat_s:
        extra["heartbeat.interval.ms"] = int(heartbeat_s * 1000)
    return settings.librdkafka(**extra)


def commit_offsets(read: Mapping[str, tuple[int, int]], waiting: Mapping[str, int]) -> dict[str, int]:
    """Offsets to commit per ``"topic:partition"``.

    ``read`` holds, per partition read under the current assignment, the first and the last offset folded;
    ``waiting`` is ``IngestFold.waiting_outcomes()``: the lowest offset of an outcome still waiting for its
    response. The commit is the next offset (last + 1), held back to a waiting outcome so it is re-read after a
    crash, but never below the first offset read under this assignment: a waiting entry below it is left over
    from an earlier ownership of the partition, and its records are not ours to hold.

    >>> commit_offsets({"o:0": (10, 19), "p:0": (5, 7)}, {"o:0": 12, "x:1": 3})
    {'o:0': 12, 'p:0': 8}
    >>> commit_offsets({"o:0": (10, 19)}, {"o:0": 4})
    {'o:0': 10}
    """
    out: dict[str, int] = {}
    for tp, (first, last) in read.items():
        target = last + 1
        hold = waiting.get(tp)
        if hold is not None and hold < target:
            target = max(first, hold)
        out[tp] = target
    return out


class DeliveryError(RuntimeError):
    """An emit was not delivered: the batch's offsets must not be committed."""


class IngestLoop:
    """Consume ``pairs`` + ``outcomes``, fold, publish, commit; runs in its own (daemon) thread.

    ``start()`` from the worker's start-up, ``stop()`` on shutdown (finishes the batch, commits, closes). If the
    thread dies of anything, ``on_fatal`` is called after logging; the default ends the process with
    ``EXIT_INGEST_DIED`` so a supervisor restarts it, never leaving a worker that analyses but does not ingest.
    """

    def __init__(self, settings: Settings, fold: IngestFold, *, group_id: str, recover: bool = True,
                 session_timeout_s: float | None = None, heartbeat_s: float | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.settings = settings
        self.fold = fold
        self.group_id = group_id
        self.recover = recover
        self.session_timeout_s = session_timeout_s
        self.heartbeat_s = heartbeat_s
        self.on_fatal = on_fatal or _exit_process
        self.topics = emit_topics(settings)
        self.batches = 0
        self.commits = 0
        self.commit_failures = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._producer: Any = None
        self._assigned: set[TP] = set()
        self._first: dict[TP, int] = {}  # first offset folded per partition under the current assignment
        self._last: dict[TP, int] = {}  # last offset folded
        self._committed: dict[TP, int] = {}  # last offset committed (by this member, this assignment)
        self._ts: dict[TP, int] = {}  # record timestamp (ms) of the newest record folded per partition
        self._paused: set[TP] = set()  # outcomes partitions paused by _align
        self.align_pauses = 0
        self._emits: list[Emit] = []  # produced by fold.process, not yet published
        self._dirty = False  # records folded since the last flush
        self._undelivered = 0
        self._delivery_errors: list[str] = []
        self._callback_error: BaseException | None = None
        self._failed = False  # set once anything failed: from then on nothing is committed
        self._last_commit_ok = time.monotonic()
        self._logged: dict[int, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> threading.Thread:
        if self._thread is not None:
            raise RuntimeError("ingest loop already started")
        self._thread = threading.Thread(target=self.run, name="rollguard-ingest", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 60.0) -> None:
        """Ask the loop to finish its batch, commit and close; wait up to ``timeout`` for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("ingest loop did not stop within %ss; its uncommitted records will be read again", timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Thread body: the loop, then an orderly close; any exception is fatal for the process."""
        try:
            self._run()
        except BaseException as exc:  # every death of the ingest thread must end the worker
            self.error = exc
            log.critical("ingest loop died; ending the worker so it is restarted", exc_info=exc)
            for h in logging.getLogger().handlers + log.handlers:
                h.flush()
            self.on_fatal(exc)

    def _run(self) -> None:
        t = self.settings.topics
        self._producer = Producer({**producer_config(self.settings), "error_cb": self._on_client_error})
        self._consumer = Consumer({**consumer_config(self.settings, self.group_id,
                                                     session_timeout_s=self.session_timeout_s,
                                                     heartbeat_s=self.heartbeat_s),
                                   "error_cb": self._on_client_error})
        try:
            if self.recover:
                self._recover("start-up")
            self._consumer.subscribe([t.pairs, t.outcomes], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                     on_lost=self._on_lost)
            log.info("ingest loop consuming %s, %s as group %s", t.pairs, t.outcomes, self.group_id)
            while not self._stop.is_set():
                msgs = self._consumer.consume(MAX_BATCH, timeout=self.settings.flush_interval_s)
                self._raise_callback_error()
                self._fold(msgs)
                if self._dirty:
                    self._finish_batch()
                elif self._needs_commit():
                    self._commit()
                self._align()
            if self._dirty:
                self._finish_batch()
            self._commit(final=True)
        except BaseException:
            # nothing may be committed after a failure (a batch may be folded but not delivered); the consumer
            # is not closed either (close can block on a dead broker): the process ends, the group times it out
            self._failed = True
            raise
        self._consumer.close()  # leaves the group at once; on_revoke finds nothing pending
        self._producer.flush(10)
        self._raise_callback_error()
        log.info("ingest loop stopped after %d batches", self.batches)

    # ------------------------------------------------------------------ per batch
    def _fold(self, msgs: list[Any]) -> None:
        """Fold a consumed batch (``Message`` objects; ``Any`` because a message without error always has a topic,
        partition and offset, which the stubs cannot say, and a cast per record costs)."""
        process = self.fold.process
        emits = self._emits
        assigned, first, last = self._assigned, self._first, self._last
        newest: dict[TP, Any] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                self._on_message_error(err)
                continue
            topic, part, off = m.topic(), m.partition(), m.offset()
            tp = (topic, part)
            if tp not in assigned:
                continue  # revoked while this batch was fetched: its new owner reads it from the commit
            emits += process(m.value(), topic=topic, partition=part, offset=off, key=m.key())
            last[tp] = off
            newest[tp] = m
            if tp not in first:
                first[tp] = off
            self._dirty = True
        for tp, m in newest.items():
            kind, ts = m.timestamp()
            if kind:  # TIMESTAMP_NOT_AVAILABLE (0): no alignment for this partition
                self._ts[tp] = ts

    def _align(self) -> None:
        """Keep each outcomes partition from running more than ``ALIGN_MS`` (record time) ahead of its pairs
        partition while that one still has records to read, by pausing it.

        librdkafka fills a batch by bytes per partition, so on a backlog the small outcome records run far ahead
        of their larger responses (measured: whole outcomes partitions before a third of their pairs). Such
        outcomes wait in the join, hold the commit back (``waiting_outcomes``) and, on a large enough backlog,
        would overflow the join's bounds. Kafka Streams aligns co-partitioned inputs by timestamp for the same
        reason. Pairs are never paused (responses ahead of outcomes is the normal state), so this cannot stall.
        """
        pairs, outcomes = self.settings.topics.pairs, self.settings.topics.outcomes
        for topic, part in list(self._assigned):
            if topic != outcomes:
                continue
            o, pr = (topic, part), (pairs, part)
            o_ts, p_ts = self._ts.get(o), self._ts.get(pr)
            if o_ts is None or p_ts is None or pr not in self._assigned:
                hold = False
            elif o in self._paused:  # hysteresis: resume once the pairs reached the outcomes' time (or their end)
                hold = p_ts < o_ts and self._has_more(pr)
            else:
                hold = o_ts - p_ts > ALIGN_MS and self._has_more(pr)
            if hold == (o in self._paused):
                continue
            tps = [TopicPartition(topic, part)]
            if hold:
                self._consumer.pause(tps)
                self._paused.add(o)
                self.align_pauses += 1
            else:
                self._consumer.resume(tps)
                self._paused.discard(o)

    def _has_more(self, tp: TP) -> bool:
        """The partition has records past the last one folded (cached high watermark: no request)."""
        _lo, hi = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        return hi is not None and hi >= 0 and hi > self._last.get(tp, hi) + 1

    def _finish_batch(self) -> None:
        """Flush the fold, publish everything and wait for delivery, then commit. Raises if anything failed."""
        emits, self._emits = self._emits, []
        emits += self.fold.flush()
        self._publish(emits)
        self._dirty = False
        self.batches += 1
        self._commit()

    def _publish(self, emits: list[Emit]) -> None:
        producer = self._producer
        for e in emits:
            topic = self.topics[e.kind]
            while True:
                try:
                    producer.produce(topic, value=e.value, key=e.key, on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.1)
            self._undelivered += 1
        while self._undelivered > 0:
            producer.flush(1.0)  # every message gets a report by message.timeout.ms at the latest
        if self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise DeliveryError(f"{len(errors)} emit(s) not delivered, first: {errors[0]}; not committing")

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._undelivered -= 1
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    # ------------------------------------------------------------------ commits
    def _targets(self) -> dict[TP, int]:
        waiting_of = getattr(self.fold, "waiting_outcomes", None)
        waiting: Mapping[str, int] = waiting_of() if waiting_of is not None else {}
        read = {f"{tp[0]}:{tp[1]}": (self._first[tp], off) for tp, off in self._last.items()}
        targets = commit_offsets(read, waiting)
        return {tp: targets[f"{tp[0]}:{tp[1]}"] for tp in self._last}

    def _needs_commit(self) -> bool:
        return any(self._committed.get(tp) != off for tp, off in self._targets().items())

    def _commit(self, *, final: bool = False, only: set[TP] | None = None) -> None:
        """Commit the targets that moved; a failure is retried with the next batch (the commit only lags)."""
        if self._failed:
            return
        todo = {tp: off for tp, off in self._targets().items()
                if self._committed.get(tp) != off and (only is None or tp in only)}
        if not todo:
            self._last_commit_ok = time.monotonic()
            return
        try:
            result = self._consumer.commit(offsets=[TopicPartition(t, p, off) for (t, p), off in todo.items()],
                                           asynchronous=False)
        except KafkaException as exc:
            self.commit_failures += 1
            stale = time.monotonic() - self._last_commit_ok
            if stale > COMMIT_GIVE_UP_S:
                raise RuntimeError(f"no ingest commit succeeded for {stale:.0f}s: {exc}") from exc
            log.log(logging.ERROR if final else logging.WARNING,
                    "ingest commit failed (%s)%s", exc, "" if final else "; retried with the next batch")
            return
        ok = 0
        for tp in result or []:
            if tp.error is not None:
                self.commit_failures += 1
                log.warning("ingest commit of %s[%d] failed: %s", tp.topic, tp.partition, tp.error)
                continue
            self._committed[(tp.topic, tp.partition)] = tp.offset
            ok += 1
        if ok:
            self.commits += 1
            self._last_commit_ok = time.monotonic()

    # ------------------------------------------------------------------ rebalance (called inside consume)
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            new = {(tp.topic, tp.partition) for tp in partitions}
            if new and self.recover:
                self._recover(f"assignment of {len(new)} partition(s)")
            self._assigned |= new
            log.info("ingest assigned %s", _fmt(new))
        except BaseException as exc:  # re-raised from the loop after consume returns
            self._callback_error = exc

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        try:
            if self._dirty:  # never expected (batches finish before consume), but never skipped either
                self._finish_batch()
            self._commit(final=True, only=gone)
        except BaseException as exc:  # re-raised from the loop
            self._failed = True
            self._callback_error = exc
        finally:
            self._forget(gone)
            log.info("ingest revoked %s", _fmt(gone))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        log.warning("ingest lost %s (session expired); their new owner re-reads from the last commit", _fmt(gone))
        self._forget(gone)

    def _forget(self, gone: set[TP]) -> None:
        self._assigned -= gone
        for tp in gone:
            self._first.pop(tp, None)
            self._last.pop(tp, None)
            self._committed.pop(tp, None)
            self._ts.pop(tp, None)
            self._paused.discard(tp)  # a new assignment starts unpaused

    def _recover(self, why: str) -> None:
        from rollguard.streams.recovery import recover_ingest

        t0 = time.monotonic()
        recover_ingest(self.settings, self.fold, group_id=self.group_id)
        log.info("ingest recovery on %s took %.2fs", why, time.monotonic() - t0)

    # ------------------------------------------------------------------ errors
    def _raise_callback_error(self) -> None:
        if self._callback_error is not None:
            exc, self._callback_error = self._callback_error, None
            raise exc

    def _on_message_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaException(err)
        self._log_throttled(err.code(), "ingest consumer: %s", err)

    def _on_client_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (transient: all brokers down, timeouts); fatal ones end the loop."""
        if err.fatal():
            self._callback_error = KafkaException(err)
        self._log_throttled(err.code(), "ingest client: %s", err)

    def _log_throttled(self, code: int, fmt: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged.get(code, float("-inf")) >= 10.0:
            self._logged[code] = now
            log.warning(fmt, *args)


def _fmt(tps: set[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps)) or "nothing"


def _exit_process(exc: BaseException) -> None:
    """End the whole worker (os._exit: Faust's shutdown would wait on the analysis and hide the failure)."""
    os._exit(EXIT_INGEST_DIED)

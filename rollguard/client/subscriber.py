"""ControlSubscriber: how a flag service follows rollguard's decisions, trusting only verified commands.

It reads the compacted control topic from the beginning (so a restarted flag service rebuilds the current
state), verifies each command's signature, rejects unsigned, forged, stale (``seq`` not newer than the
flag's last) and replayed (``command_id`` seen) commands, keeps the latest command per (flag, scope), and
calls back on every accepted change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from rollguard.config import Settings
from rollguard.contracts import Command, ContractError, decode_command
from rollguard.signing import Verifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejection:
    reason: str
    key: str | None
    offset: int
    command_id: str | None = None


class ControlState:
    """Pure acceptance logic (no Kafka): what a subscriber believes, and why it refused what it refused."""

    def __init__(self, verifier: Verifier | None) -> None:
        self.verifier = verifier
        self.latest: dict[str, Command] = {}  # control key (flag[/scope]) -> command
        self.last_seq: dict[str, int] = {}  # flag -> seq
        self.seen_ids: set[str] = set()
        self.rejections: list[Rejection] = []
        self.rejected: Counter[str] = Counter()
        self.accepted = 0

    def offer(self, raw: bytes | None, *, key: str | None = None, offset: int = -1) -> Command | None:
        """Accept and return the command, or record why not and return None."""
        if raw is None:
            return None  # tombstone: compaction deleting a key
        try:
            cmd = decode_command(raw)
        except ContractError as exc:
            self._reject(f"malformed: {exc.reason}", key, offset, None)
            return None
        if self.verifier is not None:
            why = self.verifier.verify(cmd)
            if why is not None:
                self._reject(why, key, offset, cmd.command_id)
                return None
        if cmd.command_id in self.seen_ids:
            self._reject("replayed command_id", key, offset, cmd.command_id)
            return None
        if cmd.seq <= self.last_seq.get(cmd.flag, -1):
            self._reject(f"stale seq {cmd.seq} <= {self.last_seq[cmd.flag]}", key, offset, cmd.command_id)
            return None
        if key is not None and key != cmd.control_key:
            self._reject(f"key {key!r} does not match command scope", key, offset, cmd.command_id)
            return None
        self.seen_ids.add(cmd.command_id)
        self.last_seq[cmd.flag] = cmd.seq
        self.latest[cmd.control_key] = cmd
        self.accepted += 1
        return cmd

    def _reject(self, reason: str, key: str | None, offset: int, command_id: str | None) -> None:
        self.rejections.append(Rejection(reason, key, offset, command_id))
        self.rejected[reason.split(" ")[0]] += 1
        log.warning("control command rejected at offset %d (key %r): %s", offset, key, reason)
        return None

    def for_flag(self, flag: str) -> list[Command]:
        return [c for c in self.latest.values() if c.flag == flag]


class ControlSubscriber:
    """Follows ``rollguard.control``; ``on_change(command)`` runs for each accepted command."""

    def __init__(self, settings: Settings | None = None, *, verifier: Verifier | None = None,
                 on_change: Callable[[Command], None] | None = None,
                 on_reject: Callable[[Rejection], None] | None = None,
                 require_signatures: bool = True) -> None:
        self.settings = settings or Settings.from_env()
        if verifier is None and require_signatures:
            verifier = Verifier.from_env()
        self.state = ControlState(verifier)
        self.on_change = on_change
        self.on_reject = on_reject
        self._consumer = Consumer(self.settings.librdkafka(**{
            "group.id": f"rollguard-subscriber-{time.time_ns()}",  # never committed: we assign explicitly
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }))
        self._assigned = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.received_at: dict[str, float] = {}  # command_id -> monotonic receive time (reaction benchmark)

    def _assign(self) -> None:
        topic = self.settings.topics.control
        md = self._consumer.list_topics(topic, timeout=10)
        parts = md.topics[topic].partitions if topic in md.topics else {}
        if not parts:
            parts = {0: None}
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._assigned = True

    def poll(self, timeout: float = 0.2) -> int:
        """Process what arrives within ``timeout``; returns the number of accepted commands."""
        if not self._assigned:
            self._assign()
        accepted = 0
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            msg = self._consumer.poll(remaining)
            if msg is None:
                break
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:  # type: ignore[union-attr]
                    log.warning("control consumer error: %s", msg.error())
                continue
            raw_key = msg.key()
            key = raw_key.decode("utf-8", "replace") if raw_key else None
            before = len(self.state.rejections)
            cmd = self.state.offer(msg.value(), key=key, offset=msg.offset() or 0)
            if cmd is not None:
                accepted += 1
                self.received_at[cmd.command_id] = time.monotonic()
                if self.on_change:
                    self.on_change(cmd)
            elif len(self.state.rejections) > before and self.on_reject:
                self.on_reject(self.state.rejections[-1])
            if time.monotonic() >= deadline:
                break
        return accepted

    def wait_for(self, predicate: Callable[[ControlState], bool], timeout: float = 30.0) -> bool:
        """Poll until ``predicate(state)`` holds (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.state):
                return True
            self.poll(min(0.2, max(0.0, deadline - time.monotonic())))
        return predicate(self.state)

    def start(self) -> None:
        """Follow the topic in a background thread."""
        def run() -> None:
            while not self._stop.is_set():
                self.poll(0.2)

        self._thread = threading.Thread(target=run, name="rollguard-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()

    def __enter__(self) -> ControlSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

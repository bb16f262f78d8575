"""EventProducer: how a service puts its AI responses and outcomes on Kafka without risking its request path.

``send_*`` never blocks and never raises into the caller: a full local queue drops the event (counted), a
bad event is refused (counted, logged), and delivery failures arrive later through librdkafka's callback
(counted, logged). ``close()`` flushes what is queued.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from rollguard.config import Settings
from rollguard.contracts import OutcomeEvent, ResponseEvent, encode

log = logging.getLogger(__name__)


class EventProducer:
    """Fire-and-forget producer for response and outcome events (key = request_id).

    ``acks=all`` with idempotence so a broker hiccup neither loses nor duplicates what was accepted;
    a small linger batches events cheaply.
    """

    def __init__(self, settings: Settings | None = None, *, config: dict[str, Any] | None = None) -> None:
        self.settings = settings or Settings.from_env()
        conf = self.settings.librdkafka(**{
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 200_000,
            "message.timeout.ms": 120_000,
        })
        conf.update(config or {})
        self._producer = Producer(conf)
        self._lock = threading.Lock()
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.invalid = 0
        self.last_error: str | None = None

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                self.last_error = str(err)
        if err is not None:
            log.warning("rollguard event not delivered: %s", err)

    def _send(self, topic: str, key: str, value: bytes) -> bool:
        try:
            self._producer.produce(topic, value=value, key=key.encode(), on_delivery=self._on_delivery)
        except BufferError:
            self.dropped += 1
            self._producer.poll(0)
            return False
        except Exception as exc:  # never into the request path
            self.failed += 1
            self.last_error = repr(exc)
            log.warning("rollguard produce failed: %r", exc)
            return False
        self.sent += 1
        self._producer.poll(0)
        return True

    def send_response(self, event: ResponseEvent | dict[str, Any]) -> bool:
        """Queue a response event; False if it was refused or dropped (never raises)."""
        try:
            ev = event if isinstance(event, ResponseEvent) else ResponseEvent.model_validate(event)
            value = encode(ev)
        except Exception as exc:
            self.invalid += 1
            log.warning("rollguard response event refused: %s", str(exc)[:200])
            return False
        return self._send(self.settings.topics.pairs, ev.request_id, value)

    def send_outcome(self, event: OutcomeEvent | dict[str, Any]) -> bool:
        """Queue an outcome event; False if it was refused or dropped (never raises)."""
        try:
            ev = event if isinstance(event, OutcomeEvent) else OutcomeEvent.model_validate(event)
            value = encode(ev)
        except Exception as exc:
            self.invalid += 1
            log.warning("rollguard outcome event refused: %s", str(exc)[:200])
            return False
        return self._send(self.settings.topics.outcomes, ev.request_id, value)

    def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """For tests and tools that must put arbitrary bytes on a topic (e.g. the DLQ tests)."""
        self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
        self.sent += 1
        self._producer.poll(0)

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for queued events; returns how many are still undelivered."""
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 30.0) -> int:
        return self.flush(timeout)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

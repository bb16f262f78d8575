"""Security: SASL/PLAIN from config to every client, and no raw prompt/response text outside the DLQ.

A private broker with a SASL_PLAINTEXT listener (``deploy/kafka/local.sh`` with ROLLGUARD_KAFKA_SASL_PORT) is
started and always stopped by the fixture. The worker (Faust/aiokafka), ``EventProducer`` and
``ControlSubscriber`` (confluent-kafka) and the topics admin all get the same settings from the
``ROLLGUARD_KAFKA_*`` environment; the demo-style regression must produce its rollback, a wrong password must
fail loudly, and after PII-laden traffic no alert, metric snapshot, decision, command or worker log line may
contain raw input/output text (the DLQ, which holds raw payloads by design, is the restricted topic).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from itertools import chain
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException

from rollguard.client import ControlSubscriber, EventProducer
from rollguard.config import KafkaSecurity, Settings
from rollguard.simulate import Traffic
from rollguard.topics import KafkaAuthenticationError, create_topics
from tests.faults.harness import (
    PREMIUM,
    REGRESSION,
    GroupLag,
    Keys,
    OwnBroker,
    WorkerProc,
    changelog_topic,
    fresh_settings,
    read_all,
    wait_until,
)

RESPONSES = 30_000
PII_MARK = re.compile(rb"PROMPTPII\d+|RESPONSEPII\d+|\w+\.\d+@pii-mail\.example|555-01\d\d-\d{4}|4111 1111 1111 1111")


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[OwnBroker]:
    with OwnBroker(sasl_password=secrets.token_urlsafe(16)) as kafka:
        yield kafka


def sasl_settings(kafka: OwnBroker, password: str | None = None) -> Settings:
    """The way a deployment configures it: environment variables read by ``Settings.from_env``."""
    env = {"ROLLGUARD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "ROLLGUARD_KAFKA_SASL_MECHANISM": "PLAIN",
           "ROLLGUARD_KAFKA_SASL_USERNAME": "rollguard",
           "ROLLGUARD_KAFKA_SASL_PASSWORD": password or kafka.sasl_password or "",
           "ROLLGUARD_BOOTSTRAP": kafka.sasl_bootstrap}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from_env = Settings.from_env()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert from_env.security.protocol == "SASL_PLAINTEXT" and from_env.bootstrap == kafka.sasl_bootstrap
    return fresh_settings(from_env.bootstrap, security=from_env.security)


def pii_events(n: int) -> list[dict[str, Any]]:
    traffic = Traffic(seed=11, regressions=[REGRESSION])
    # one late straggler moves the event clock on, so the analysis closes its windows (metric snapshots)
    late = Traffic(seed=12, start=traffic.start + timedelta(minutes=10)).events(2)
    out = []
    for i, ev in enumerate(chain(traffic.events(n), late)):
        if ev["schema"].startswith("rollguard.response"):
            ev = dict(ev)
            ev["input"] = (f"I am jane.{i}@pii-mail.example, call me on 555-01{i % 100:02d}-{i % 10000:04d}; "
                           f"card 4111 1111 1111 1111. PROMPTPII{i} " + ev["input"])
            if ev["output"]:
                ev["output"] = ev["output"] + f" We emailed jane.{i}@pii-mail.example. RESPONSEPII{i}"
        out.append(ev)
    return out


def test_sasl_every_client_and_no_raw_text_leaks(sasl_broker: OwnBroker, tmp_path: Path) -> None:
    settings = sasl_settings(sasl_broker)
    keys = Keys()
    assert create_topics(settings)  # the admin client over SASL
    events = pii_events(RESPONSES)
    with WorkerProc(settings, keys, tmp_path) as worker:
        lag = GroupLag(settings)
        sub = ControlSubscriber(settings, verifier=keys.verifier())
        try:
            with EventProducer(settings) as p:
                for ev in events:
                    assert p.send_response(ev) if ev["schema"].startswith("rollguard.response") else \
                        p.send_outcome(ev)
                assert p.flush(60) == 0 and p.failed == 0, p.last_error
            assert sub.wait_for(lambda s: any(c.scope == PREMIUM and c.action == "rollback"
                                              for c in s.latest.values()), 180), \
                "no rollback over SASL:\n" + worker.log_text()[-3000:]
            wait_until(lag.drained, 120, "the worker to drain")
            commands = [(c.action.value, c.scope) for c in sub.state.latest.values()]
        finally:
            sub.close()
            lag.close()
        log = worker.log_text()
    assert commands == [("rollback", PREMIUM)]
    t = settings.topics
    scanned: dict[str, int] = {}
    for topic in (t.alerts, t.metrics, t.decisions, t.control, t.partials, changelog_topic(settings)):
        records = read_all(settings, topic)
        scanned[topic] = len(records)
        for _k, v in records:
            m = PII_MARK.search(v or b"")
            assert m is None, f"raw text {m.group(0)!r} on {topic}"
    assert scanned[t.alerts] >= 1 and scanned[t.decisions] >= 1 and scanned[t.metrics] >= 1
    assert PII_MARK.search(log.encode()) is None
    assert (sasl_broker.sasl_password or "") not in log, "the SASL password is in the worker log"
    dlq = read_all(settings, t.dlq)
    print(f"SASL run: rollback {commands}; scanned records {scanned} + worker log ({len(log)} chars): no raw text; "
          f"DLQ (restricted, exempt) {len(dlq)} records")


def test_wrong_password_fails_clearly(sasl_broker: OwnBroker, tmp_path: Path) -> None:
    bad = sasl_settings(sasl_broker, password="not-the-password")
    # librdkafka's own exception only says "Broker transport failure"; the error callback tells why
    with pytest.raises(KafkaAuthenticationError, match=r"(?i)authentication as 'rollguard' .* failed: .*"):
        create_topics(bad, timeout=15)
    keys = Keys()
    worker = WorkerProc(bad, keys, tmp_path).start()
    try:
        assert worker.proc is not None
        worker.proc.wait(timeout=60)  # the worker refuses to start instead of retrying silently
        log = worker.log_text()
    finally:
        worker.stop()
    assert worker.proc.returncode != 0
    assert re.search(r"(?i)authentication failed|SASL authentication error", log), log[-2000:]
    # a plaintext client pointed at the SASL listener does not get in either
    plain = fresh_settings(sasl_broker.sasl_bootstrap, security=KafkaSecurity())
    with pytest.raises(KafkaException):
        create_topics(plain, timeout=10)

"""What every test package shares: the real broker, for the tests that need one."""

from __future__ import annotations

import os

import pytest
from confluent_kafka.admin import AdminClient

#: The broker the integration and fault tests use (``deploy/kafka/local.sh start``; CI starts it in .ci/run).
BOOTSTRAP = os.environ.get("ROLLGUARD_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def broker() -> str:
    """The broker's address; fails (in CI) or skips (elsewhere) when none answers."""
    try:
        AdminClient({"bootstrap.servers": BOOTSTRAP, "socket.timeout.ms": 3000}).list_topics(timeout=5)
    except Exception as exc:  # pragma: no cover - depends on the machine
        msg = f"no Kafka broker at {BOOTSTRAP} ({exc}); start one with deploy/kafka/local.sh start"
        if os.environ.get("CI") or os.environ.get("ROLLGUARD_REQUIRE_KAFKA"):
            pytest.fail(msg)
        pytest.skip(msg)
    return BOOTSTRAP

"""Fault tests run on the real broker (the shared one, or a private one they start and stop themselves)."""

from __future__ import annotations

import os

import pytest
from confluent_kafka.admin import AdminClient

from tests.faults.harness import SHARED_BOOTSTRAP


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "faults" in str(item.fspath) and "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> str:
    """The shared broker's address; fails (in CI) or skips (elsewhere) when none answers."""
    try:
        AdminClient({"bootstrap.servers": SHARED_BOOTSTRAP, "socket.timeout.ms": 3000}).list_topics(timeout=5)
    except Exception as exc:  # pragma: no cover - depends on the machine
        msg = f"no Kafka broker at {SHARED_BOOTSTRAP} ({exc}); start one with deploy/kafka/local.sh start"
        if os.environ.get("CI") or os.environ.get("ROLLGUARD_REQUIRE_KAFKA"):
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_BOOTSTRAP

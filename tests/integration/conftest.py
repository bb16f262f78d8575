"""Integration tests need the real broker: ``deploy/kafka/local.sh start`` (CI starts it in .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.integration.harness import BOOTSTRAP, Keys

SPEC = Path(__file__).resolve().parents[2] / "rollguard" / "specs" / "support-reply.yaml"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def spec_path() -> Path:
    return SPEC

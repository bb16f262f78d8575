"""Integration tests need the real broker (the ``broker`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import Keys

SPEC = Path(__file__).resolve().parents[2] / "rollguard" / "specs" / "support-reply.yaml"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def spec_path() -> Path:
    return SPEC

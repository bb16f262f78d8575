"""Fault tests run on the real broker (the shared one from ``tests/conftest.py``, or a private one they start
and stop themselves)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "faults" in str(item.fspath) and "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)

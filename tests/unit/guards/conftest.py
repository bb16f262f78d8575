from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from guardtest_helpers import ENGINES, default_set

from rollguard.guards import GuardSet


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gs(engine: str) -> GuardSet:
    return default_set(engine)

"""Shared helpers for the guards tests (imported by name; conftest puts this dir on sys.path)."""

from __future__ import annotations

import pytest

from rollguard.guards import HAVE_HYPERSCAN, Finding, GuardItem, GuardSet, build_guard_set

ENGINES = [
    "re",
    pytest.param("hyperscan", marks=pytest.mark.skipif(not HAVE_HYPERSCAN, reason="no hyperscan")),
]

_CACHE: dict[str, GuardSet] = {}


def default_set(engine: str) -> GuardSet:
    if engine not in _CACHE:
        _CACHE[engine] = build_guard_set(engine=engine)
    return _CACHE[engine]


def found(gs: GuardSet, output: str = "", **kw: object) -> dict[str, Finding]:
    """code -> finding for one item (codes are unique per field in one check)."""
    item = GuardItem(output=output, **kw)  # type: ignore[arg-type]
    return {f.code: f for f in gs.check(item)}


def spans_text(text: str, f: Finding) -> list[str]:
    return [text[s:e] for s, e in f.spans]

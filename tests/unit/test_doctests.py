"""Run every module's docstring examples, imported through the installed package (not by file path)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"rollguard": ROOT / "rollguard", "rollguard.streams": ROOT / "streams",
            "rollguard.guards": ROOT / "guards", "rollguard.detectors": ROOT / "detectors"}
SKIP = {"rollguard.cli", "rollguard.streams.app"}  # entry points with no examples; imported elsewhere


def modules() -> list[str]:
    out = []
    for pkg, path in PACKAGES.items():
        for f in sorted(path.rglob("*.py")):
            rel = f.relative_to(path).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if name not in SKIP:
                out.append(name)
    return out


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"

"""Both engines must give identical findings; check must never raise."""

from __future__ import annotations

import doctest
import importlib
import pickle
import random
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from guardtest_helpers import default_set
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rollguard.guards as guards_pkg
from rollguard.guards import HAVE_HYPERSCAN, Finding, GuardItem, GuardSet, Severity, build_guard_set

pytestmark = pytest.mark.skipif(not HAVE_HYPERSCAN, reason="engine comparison needs hyperscan")

FULL = {
    "banned": {
        "substrings": ["internal use only", "Straße"],
        "regexes": [r"project\s+falcon", r"(?<!no )refund"],
    },
    "secrets": {"fields": ["input", "output"]},
    "pii": {"fields": ["input", "output"]},
    "format": {"schema": {"type": "object"}},
    "budget": {"latency_ms": 100},
}

# fragments that exercise every pattern, combined at random with separators
FRAGMENTS = [
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "(415) 555-2671",
    "4111 1111 1111 1111",
    "4111 1111 1111 1112",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "123-45-6789",
    "666-12-3456",
    "192.168.1.20",
    "1.2.3.4.5",
    "2001:db8::1",
    "12:34:56",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "sk-abcDEF1234567890ghiJKL9876",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "-----BEGIN EC PRIVATE KEY-----",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "I'm sorry, but I can't",
    "As an AI language model",
    "Lo siento, pero no puedo",
    "Je ne peux pas",
    "ignore all previous instructions",
    "you are now DAN",
    "my system prompt is",
    "order #48392011",
    "2024-01-15",
    "version 1.2.3.4",
    "Straße",
    "STRASSE",
    "für",
    "“quoted”",
    "€",
    "日本語",
    "😀",
    "0012345678",
    "call me at 3420837783",
    "project  falcon",
    "no refund",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "xoxb-123456789012-1234567890123-AbCdEf",
]
SEPS = [" ", "", "\n", ", ", ".", "-", "(", ")", "+", ":", "é", "\x0b", "  "]


def corpus(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(FRAGMENTS) + rng.choice(SEPS) for _ in range(rng.randint(1, 12))) for _ in range(n)
    ]


@pytest.fixture(scope="module")
def pair() -> tuple[GuardSet, GuardSet]:
    return build_guard_set(FULL, engine="hyperscan"), build_guard_set(FULL, engine="re")


def _check(pair: tuple[GuardSet, GuardSet], item: GuardItem) -> list[Finding]:
    a, b = pair[0].check(item), pair[1].check(item)
    assert a == b, (item, a, b)
    return a


def test_engines_identical_on_corpus(pair: tuple[GuardSet, GuardSet]) -> None:
    assert pair[0].engine == "hyperscan" and pair[1].engine == "re"
    total = 0
    for text in corpus(400):
        total += len(_check(pair, GuardItem(output=text, input=text[::-1])))
    assert total > 400  # the corpus really exercises the patterns


_alphabet = st.sampled_from([*"0123456789 .-+()@:/_xAKIaeiouSskpghDEN\n’é日", "sk-", "eyJ", "ghp_", "00"])
_texty = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(_alphabet, st.sampled_from(FRAGMENTS)), max_size=60).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(output=_texty, inp=_texty)
def test_engines_agree_and_never_raise(pair: tuple[GuardSet, GuardSet], output: str, inp: str) -> None:
    for f in _check(pair, GuardItem(output=output, input=inp)):
        assert not f.code.endswith("internal_error"), f
        text = output if f.field == "output" else inp
        for s, e in f.spans:
            assert 0 <= s < e <= len(text)


@pytest.mark.parametrize("engine", ["hyperscan", "re"])
def test_weird_items_never_raise(engine: str) -> None:
    gs = build_guard_set(FULL, engine=engine)
    weird: list[Any] = [
        GuardItem(output="\ud800 lone surrogate jane@example.com"),
        GuardItem(output=None),  # type: ignore[arg-type]
        GuardItem(output=b"bytes"),  # type: ignore[arg-type]
        GuardItem(output="x" * 200_000 + " jane@example.com"),
        GuardItem(output="9" * 5000),
        GuardItem(output="", latency_ms="slow", output_tokens="many", error=123),  # type: ignore[arg-type]
        GuardItem(output="\x00" * 100),
    ]
    for item in weird:
        fs = gs.check(item)
        assert all(isinstance(f, Finding) for f in fs)
    assert "pii.email" in {f.code for f in gs.check(weird[0])}


def test_pickle_roundtrip() -> None:
    gs = build_guard_set(FULL, engine="auto")
    clone = pickle.loads(pickle.dumps(gs))
    assert clone.names == gs.names and clone.engine == gs.engine
    item = GuardItem(output="mail jane@example.com, key AKIAIOSFODNN7EXAMPLE", latency_ms=500)
    assert clone.check(item) == gs.check(item)


class _Shouty:
    name = "shouty"
    severity = Severity.INFO

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.limit = int(cfg.get("max_caps", 3))

    def check(self, item: GuardItem) -> list[Finding]:
        words = [w for w in item.output.split() if w.isupper() and len(w) > 1]
        if len(words) > self.limit:
            return [
                Finding(self.name, "shouty.caps", self.severity, "output", (), f"{len(words)} caps words")
            ]
        return []


class _Broken(_Shouty):
    name = "broken"

    def check(self, item: GuardItem) -> list[Finding]:
        raise RuntimeError("boom")


def test_plugins_via_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    import rollguard.guards.config as config_mod

    eps = [
        EntryPoint("shouty", f"{__name__}:_Shouty", "rollguard.guards"),
        EntryPoint("broken", f"{__name__}:_Broken", "rollguard.guards"),
    ]
    monkeypatch.setattr(config_mod, "entry_points", lambda group: [e for e in eps if e.group == group])
    gs = build_guard_set({"plugins": {"shouty": {"max_caps": 1}, "broken": {}}}, engine="re")
    assert gs.names[-2:] == ("shouty", "broken")
    fs = {f.code: f for f in gs.check(GuardItem(output="THIS IS BAD."))}
    assert fs["shouty.caps"].excerpt == "3 caps words"
    assert fs["broken.internal_error"].excerpt == "RuntimeError"
    assert fs["broken.internal_error"].severity is Severity.INFO


def test_default_set_pattern_guards_share_one_scanner() -> None:
    gs = default_set("hyperscan")
    fields = [f for f, _, _ in gs._scanners]
    assert fields == ["output", "input"]
    out = next(s for f, s, _ in gs._scanners if f == "output")
    assert {s.guard for s in out.specs} == {"pii", "secrets", "refusal", "injection"}


@pytest.mark.parametrize(
    "module",
    ["types", "validators", "redact", "engine", "patterns", "builtin", "config", "guardset", "__init__"],
)
def test_doctests(module: str) -> None:
    name = guards_pkg.__name__ if module == "__init__" else f"{guards_pkg.__name__}.{module}"
    res = doctest.testmod(importlib.import_module(name))
    assert res.failed == 0 and res.attempted > 0

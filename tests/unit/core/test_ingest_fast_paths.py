"""The ingest path's speed shortcuts give exactly the answers of the slower forms they replace
(``bench/profile_ingest.py`` measures what they save)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollguard import contracts
from rollguard.contracts import MAX_LABEL_CHARS, MAX_SEGMENT_KEYS, ContractError, ResponseEvent, decode
from rollguard.detectors import drift_categorical
from rollguard.detectors.aggregates import _MAPPING, _ZERO, Moments, QuantileSketch, VariantStats
from rollguard.detectors.drift import script_of
from rollguard.guards import GuardItem

RESPONSE: dict[str, Any] = {
    "schema": "rollguard.response/v1", "event_id": "e1", "request_id": "r-1", "ts": "2026-11-26T10:00:00.123Z",
    "feature": "support-reply", "variant": "canary", "mode": "live",
    "segment": {"tier": "premium", "geo": "eu", "use_case": "billing"}, "input": "hi", "output": "hello",
    "latency_ms": 812.5, "usage": {"input_tokens": 512, "output_tokens": 128}, "cost_usd": 0.0021,
}


# ------------------------------------------------------------------------------------------ decode
def _slow_decode(raw: bytes) -> Any:
    """``decode`` as it was: ``model_validate`` names every problem."""
    obj = orjson.loads(raw)
    try:
        return ResponseEvent.model_validate(obj)
    except contracts.ValidationError as exc:
        raise ContractError(f"invalid {obj['schema']}: {contracts._first_error(exc)}") from None


labels = st.one_of(st.sampled_from(["", "a", "é" * MAX_LABEL_CHARS, "x" * (MAX_LABEL_CHARS + 1), "tier"]),
                   st.text(st.characters(codec="utf-8"), max_size=MAX_LABEL_CHARS + 2))
ints = st.integers(-(2**63), 2**63 - 1)  # what JSON through orjson can carry
segments = st.one_of(
    st.dictionaries(labels, labels, max_size=MAX_SEGMENT_KEYS + 2),
    st.dictionaries(labels, st.one_of(ints, st.none(), st.booleans(), labels), max_size=4),
    st.one_of(st.none(), ints, st.lists(labels, max_size=2), st.just("tier=pro")),
)


@settings(max_examples=400, deadline=None)
@given(segment=segments, drop=st.sampled_from([None, "segment", "request_id"]),
       other=st.sampled_from([{}, {"latency_ms": -1}, {"mode": "sideways"}, {"usage": {"input_tokens": -2}}]))
def test_decode_accepts_and_refuses_exactly_as_model_validate(segment: Any, drop: str | None,
                                                              other: dict[str, Any]) -> None:
    body = {**RESPONSE, "segment": segment, **other}
    if drop is not None:
        body.pop(drop)
    raw = orjson.dumps(body)
    try:
        want = _slow_decode(raw)
    except ContractError as exc:
        with pytest.raises(ContractError) as info:
            decode(raw)
        assert info.value.reason == exc.reason
        return
    got = decode(raw)
    assert type(got) is ResponseEvent
    assert got == want and got.model_fields_set == want.model_fields_set


# ------------------------------------------------------------------------------------------ aggregates
def test_sketch_keys_match_ddsketch() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(6.5, 2.0) for _ in range(20_000)] + [rng.uniform(0, 5) for _ in range(5_000)]
    values += [0.0, 5e-324, _MAPPING.min_possible, math.nextafter(_MAPPING.min_possible, 1), 1.0, 1e300, 2.0**-1000]
    for v in values:
        s = QuantileSketch()
        s.add(v)
        want = _MAPPING.key(v) if v > _MAPPING.min_possible else _ZERO
        assert list(s.bins) == [want], v


def test_add_response_matches_the_moments_it_writes_out() -> None:
    rng = random.Random(5)
    fast, slow = VariantStats(), VariantStats()
    for _ in range(5_000):
        kw: dict[str, Any] = {
            "latency_ms": rng.choice([None, rng.lognormvariate(6.7, 0.4)]),
            "cost_usd": rng.choice([None, rng.random() / 300]),
            "input_tokens": rng.choice([None, rng.randint(0, 4000)]),
            "output_tokens": rng.choice([None, rng.randint(0, 900)]),
            "output_chars": rng.choice([None, rng.randint(0, 5000)]),
            "error": rng.random() < 0.1, "fallback": rng.random() < 0.1, "refused": rng.random() < 0.1,
            "critical": rng.random() < 0.1, "guards": rng.choice([(), {"pii"}, ("pii", "refusal"), iter(["x"])]),
        }
        fast.add_response(**kw)
        # the form before: one Moments.add per number
        slow.requests += 1
        slow.errors += kw["error"]
        slow.fallbacks += kw["fallback"]
        slow.refusals += kw["refused"]
        slow.safety_failures += kw["critical"]
        for g in kw["guards"] if not hasattr(kw["guards"], "__next__") else ["x"]:
            slow.guard_failures[g] = slow.guard_failures.get(g, 0) + 1
        if kw["latency_ms"] is not None:
            slow.latency.bins[_MAPPING.key(kw["latency_ms"])] = slow.latency.bins.get(
                _MAPPING.key(kw["latency_ms"]), 0) + 1
            slow.latency.count += 1
        for name, arg in (("cost", "cost_usd"), ("input_tokens", "input_tokens"),
                          ("output_tokens", "output_tokens"), ("output_chars", "output_chars")):
            if kw[arg] is not None:
                m: Moments = getattr(slow, name)
                m.add(kw[arg])
    assert fast.to_dict() == slow.to_dict()  # exact: the same float operations in the same order


# ------------------------------------------------------------------------------------------ script_of
def _script_of_loop(text: str, prefix: int = 64) -> str:
    counts: dict[str, int] = {}
    for ch in text[:prefix]:
        if not ch.isalpha():
            continue
        cp = ord(ch)
        name = "other"
        for lo, hi, s in drift_categorical._SCRIPT_RANGES:
            if lo <= cp <= hi:
                name = s
                break
        counts[name] = counts.get(name, 0) + 1
    if not counts:
        return "none"
    if "kana" in counts and "cjk" in counts:
        return "kana"
    return max(counts.items(), key=lambda kv: kv[1])[0]


def test_script_ranges_are_sorted_and_disjoint() -> None:
    ranges = drift_categorical._SCRIPT_RANGES
    assert all(lo <= hi for lo, hi, _ in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))


def test_script_of_matches_the_character_loop() -> None:
    rng = random.Random(7)
    edges = [c for lo, hi, _ in drift_categorical._SCRIPT_RANGES for c in (lo - 1, lo, hi, hi + 1)]
    for i in range(30_000):
        n = rng.randint(0, 90)
        if i % 3 == 0:  # ASCII: letters, digits, punctuation, controls
            text = "".join(chr(rng.randint(0, 127)) for _ in range(n))
        elif i % 3 == 1:  # mostly ASCII with range edges and anything else mixed in (ties between scripts)
            text = "".join(chr(rng.choice(edges)) if rng.random() < 0.3 else
                           chr(rng.randint(0, 0x10FFFF)) if rng.random() < 0.1 else chr(rng.randint(32, 126))
                           for _ in range(n))
        else:
            text = "".join(chr(rng.randint(0, 0xFFFF)) for _ in range(n))
        for prefix in (64, 3):
            assert script_of(text, prefix) == _script_of_loop(text, prefix), (text, prefix)


# ------------------------------------------------------------------------------------------ GuardItem
def test_guard_item_init_is_the_dataclass_init() -> None:
    names = [f.name for f in dataclasses.fields(GuardItem)]
    assert names == ["output", "input", "latency_ms", "input_tokens", "output_tokens", "cost_usd", "error",
                     "fallback", "refused"]
    a = GuardItem("out", "in", 1.5, 2, 3, 0.1, "E", True, False)
    assert [getattr(a, n) for n in names] == ["out", "in", 1.5, 2, 3, 0.1, "E", True, False]
    b = GuardItem(output="out")
    assert (b.input, b.latency_ms, b.fallback, b.refused) == ("", None, False, None)
    assert GuardItem(output="x", refused=True) == GuardItem("x", refused=True)
    assert hash(GuardItem("x")) == hash(GuardItem("x"))
    assert dataclasses.replace(a, output="new").input == "in"
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.output = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        GuardItem()  # type: ignore[call-arg]

"""Mergeability: the property two-stage aggregation rests on."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from rollguard.detectors.aggregates import QuantileSketch, VariantStats

response = st.fixed_dictionaries({
    "latency_ms": st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False)),
    "cost_usd": st.one_of(st.none(), st.integers(0, 1000).map(lambda c: c / 1e4)),
    "input_tokens": st.one_of(st.none(), st.integers(0, 5000)),
    "error": st.booleans(), "fallback": st.booleans(), "refused": st.booleans(), "critical": st.booleans(),
    "guards": st.sets(st.sampled_from(["pii", "secrets", "refusal"])),
})
outcome = st.fixed_dictionaries({
    "task_success": st.one_of(st.none(), st.booleans()), "escalated": st.one_of(st.none(), st.booleans()),
    "feedback": st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 1.0])),
})
stats = st.tuples(st.lists(response, max_size=12), st.lists(outcome, max_size=6)).map(lambda t: build(*t))


def build(responses: list[dict], outcomes: list[dict]) -> VariantStats:
    s = VariantStats()
    for r in responses:
        s.add_response(**r)
    for o in outcomes:
        s.add_outcome(**o)
    return s


def merge(*parts: VariantStats) -> VariantStats:
    out = VariantStats()
    for p in parts:
        out.merge(p)
    return out


def close(a: VariantStats, b: VariantStats) -> bool:
    da, db = a.to_dict(), b.to_dict()
    for k in set(da) | set(db):
        x, y = da.get(k), db.get(k)
        if isinstance(x, list) and isinstance(y, list):
            if not all(math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-9) for p, q in zip(x, y, strict=True)):
                return False
        elif x != y:
            return False
    return True


@settings(max_examples=200, deadline=None)
@given(stats, stats, stats)
def test_merge_is_associative_and_commutative(a: VariantStats, b: VariantStats, c: VariantStats) -> None:
    assert close(merge(merge(a, b), c), merge(a, merge(b, c)))
    assert close(merge(a, b), merge(b, a))
    assert close(merge(a, VariantStats()), a)


@settings(max_examples=100, deadline=None)
@given(stats)
def test_wire_round_trip(a: VariantStats) -> None:
    assert close(VariantStats.from_dict(a.to_dict()), a)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.5, 1e5, allow_nan=False), min_size=1, max_size=300), st.integers(1, 5))
def test_sketch_quantiles_within_relative_accuracy_and_split_invariant(values: list[float], parts: int) -> None:
    whole = QuantileSketch()
    for v in values:
        whole.add(v)
    split = [QuantileSketch() for _ in range(parts)]
    for i, v in enumerate(values):
        split[i % parts].add(v)
    merged = QuantileSketch()
    for s in split:
        merged.merge(s)
    assert merged.bins == whole.bins and merged.count == len(values)
    ordered = sorted(values)
    for q in (0.5, 0.95):
        exact = ordered[int(q * (len(values) - 1))]
        assert abs(whole.quantile(q) - exact) <= 0.0101 * exact

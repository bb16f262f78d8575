"""Unit-level fuzz of the ingest step (no broker): whatever bytes arrive, ``IngestFold.process`` never raises,
every record it cannot use becomes exactly one DLQ record with a reason, and valid records interleaved with
the garbage are all counted (checked through ``flush`` and ``Analyzer.apply``, the worker's own path)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollguard.contracts import decode_dlq
from rollguard.pipeline import Analyzer, IngestFold, SpecBook
from rollguard.simulate import Traffic
from rollguard.spec import load_specs
from tests.faults.harness import SPEC

SPECS = SpecBook(load_specs(SPEC))
VALID = list(Traffic(seed=3).events(200))
RESPONSE_FIELDS = sorted(VALID[0])

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
                | st.text(max_size=50))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=30)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event with one field replaced, dropped or given a hostile value."""
    ev: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(VALID)))
    field = draw(st.sampled_from(sorted(ev)))
    how = draw(st.sampled_from(["value", "drop", "schema", "segment", "long"]))
    if how == "value":
        ev[field] = draw(json_values)
    elif how == "drop":
        del ev[field]
    elif how == "schema":
        ev["schema"] = draw(st.sampled_from(["rollguard.response/v2", "rollguard.outcome/v0", "", "RESPONSE",
                                             "rollguard.command/v1", "rollguard.alert/v1"]))
    elif how == "segment":
        n = draw(st.integers(0, 5000))
        ev["segment"] = {f"k{i}": "v" * draw(st.integers(0, 200)) for i in range(n)}
    else:
        ev[field] = "x" * draw(st.integers(0, 300_000))
    return orjson.dumps(ev)


def nested(depth: int) -> bytes:
    return b'{"schema":"rollguard.response/v1","attributes":' + b"[" * depth + b"]" * depth + b"}"


hostile = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=200).map(lambda b: b'{"schema":"rollguard.response/v1","output":"' + b + b'"}'),
    json_values.map(orjson.dumps),
    mutated(),
    st.integers(1, 100_000).map(nested),
    st.just(b"\xff\xfe\x00"), st.just(b""), st.just(b"null"), st.just(b"[]"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(hostile, st.booleans()), min_size=1, max_size=12))
def test_process_never_raises_and_good_records_still_count(records: list[tuple[bytes, bool]]) -> None:
    fold = IngestFold(SPECS, max_event_bytes=1_048_576)
    good_responses = good_outcomes = dlq = offset = 0
    for i, (raw, on_pairs) in enumerate(records):
        out = fold.process(raw, topic="pairs" if on_pairs else "outcomes", partition=0, offset=offset)
        offset += 1
        dlqs = [e for e in out if e.kind == "dlq"]
        assert all(e.kind in ("dlq", "alerts") for e in out)
        for e in dlqs:
            rec = decode_dlq(e.value)
            assert rec.reason and rec.size == len(raw)
            # the original bytes (or, once DLQ payloads are capped, their prefix)
            assert rec.value == raw[:len(rec.value)] and (rec.value == raw or getattr(rec, "truncated", False))
        dlq += len(dlqs)
        # a valid response (and its outcome) after every hostile record
        good = VALID[(2 * i) % len(VALID)], VALID[(2 * i + 1) % len(VALID)]
        for ev in good:
            assert fold.process(orjson.dumps(ev), topic="pairs", partition=0, offset=offset) == []
            offset += 1
            if ev["schema"].startswith("rollguard.response"):
                good_responses += 1
            else:
                good_outcomes += 1
    assert fold.counters.dlq == dlq
    assert fold.counters.records == offset
    analyzer = Analyzer(SPECS)
    partials = fold.flush()
    for p in partials:
        analyzer.apply(p.value)
    rt = analyzer.features["support-reply"]
    requests = sum(s.requests for segs in rt.stage_stats.values() for s in segs.values())
    outcomes = sum(s.outcomes for segs in rt.stage_stats.values() for s in segs.values())
    # hostile records that happen to be valid events (e.g. a mutation that kept the contract) count as well
    assert requests >= good_responses and requests <= good_responses + len(records)
    assert outcomes >= good_outcomes - fold.counters.outcome_duplicates


def test_every_hostile_kind_is_refused_with_a_reason() -> None:
    fold = IngestFold(SPECS, max_event_bytes=64_000)
    base = dict(VALID[0])
    cases = {
        b"not json at all": "not JSON",
        b'{"schema":"rollguard.response/v1","output":"\xff\xfe"}': "invalid UTF-8",
        nested(100_000): "",
        orjson.dumps({**base, "schema": "rollguard.response/v9"}): "unsupported schema",
        orjson.dumps({**base, "latency_ms": "fast"}): "latency_ms",
        orjson.dumps({**base, "segment": {f"k{i}": "v" for i in range(2_000)}}): "segment",
        orjson.dumps({**base, "output": "x" * 100_000}): "record too large",
        orjson.dumps([1, 2, 3]): "not a JSON object",
        b"": "not JSON",
    }
    for i, (raw, reason) in enumerate(cases.items()):
        out = fold.process(raw, topic="pairs", partition=0, offset=i)
        assert [e.kind for e in out] == ["dlq"], raw[:80]
        assert reason in decode_dlq(out[0].value).reason, (reason, decode_dlq(out[0].value).reason)
    assert fold.process(None, topic="pairs", partition=0, offset=99)[0].kind == "dlq"

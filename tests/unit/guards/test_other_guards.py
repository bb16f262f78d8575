from __future__ import annotations

import pytest

from rollguard.guards import GuardItem, build_guard_set

SCHEMA = {
    "type": "object",
    "required": ["answer", "confidence"],
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
}


def codes(gs, **kw):  # type: ignore[no-untyped-def]
    return [f.code for f in gs.check(GuardItem(**kw))]


def test_format_schema(engine: str) -> None:
    gs = build_guard_set({"format": {"schema": SCHEMA}}, engine=engine)
    assert "format.schema" not in codes(gs, output='{"answer": "yes", "confidence": 0.9}')
    assert "format.schema" not in codes(gs, output='```json\n{"answer": "yes", "confidence": 0.9}\n```')
    bad = [
        f
        for f in gs.check(GuardItem(output='{"answer": "jane@example.com", "confidence": 7}'))
        if f.guard == "format"
    ]
    assert [(f.code, f.excerpt) for f in bad] == [("format.schema", "$.confidence: maximum")]
    assert "format.not_json" in codes(gs, output='{"answer": "yes",')
    assert "format.not_json" in codes(gs, output="Sure! Here is the JSON you asked for.")


def test_format_model(engine: str) -> None:
    gs = build_guard_set({"format": {"model": "guardtest_models:Reply"}}, engine=engine)
    assert not [
        f for f in gs.check(GuardItem(output='{"answer": "a", "confidence": 1}')) if f.guard == "format"
    ]
    bad = [
        f for f in gs.check(GuardItem(output='{"answer": "a", "confidence": "high"}')) if f.guard == "format"
    ]
    assert [(f.code, f.excerpt) for f in bad] == [("format.model", "$.confidence: float_parsing")]


def test_banned(engine: str) -> None:
    cfg = {
        "banned": {"substrings": ["internal use only"], "regexes": [r"project\s+falcon", r"(?<!no )refund"]}
    }
    gs = build_guard_set(cfg, engine=engine)
    out = "This is INTERNAL USE ONLY: Project  Falcon launches soon. A refund is possible."
    fs = {f.code: f for f in gs.check(GuardItem(output=out)) if f.guard == "banned"}
    assert fs["banned.substring"].excerpt == "substrings[0]"
    assert out[slice(*fs["banned.substring"].spans[0])] == "INTERNAL USE ONLY"
    assert [out[s:e] for s, e in fs["banned.regex"].spans] == ["Project  Falcon", "refund"]
    assert not [
        f for f in gs.check(GuardItem(output="There is no refund, falcon project.")) if f.guard == "banned"
    ]
    cs = build_guard_set({"banned": {"substrings": ["Falcon"], "case_sensitive": True}}, engine=engine)
    assert not [f for f in cs.check(GuardItem(output="falcon.")) if f.guard == "banned"]


@pytest.mark.parametrize(
    ("output", "kw", "want"),
    [
        ("", {}, "length.empty"),
        ("   \n ", {}, "length.empty"),
        ("x" * 9001, {}, "length.too_long"),
        ("Hi", {}, "length.too_short"),
        ("Here is the script:\n```python\nprint('hi')\n", {}, "length.truncated"),
        ("To reset the router, unplug it for thirty seconds and then press and", {}, "length.truncated"),
        ("Done.", {"output_tokens": 2048}, "length.truncated"),
    ],
)
def test_length_positive(engine: str, output: str, kw: dict[str, int], want: str) -> None:
    gs = build_guard_set(
        {"length": {"min_chars": 3, "max_chars": 9000, "max_output_tokens": 2048}}, engine=engine
    )
    assert want in codes(gs, output=output, **kw)


@pytest.mark.parametrize(
    "output",
    [
        "Here is the script:\n```python\nprint('hi')\n```\nRun it with python3.",
        "Steps:\n- unplug the router\n- wait thirty seconds and plug it back in again now",
        "Best regards,\nJohn",
        "Thanks, that solves it 🙂",
        '{"answer": "yes", "confidence": 0.9}',
    ],
)
def test_length_near_misses(engine: str, output: str) -> None:
    gs = build_guard_set({"length": {"max_output_tokens": 2048}}, engine=engine)
    assert not [c for c in codes(gs, output=output, output_tokens=2047) if c.startswith("length")]


def test_budget_and_flags(engine: str) -> None:
    gs = build_guard_set(
        {"budget": {"latency_ms": 5000, "output_tokens": 2048, "cost_usd": 0.05, "total_tokens": 3000}},
        engine=engine,
    )
    fs = {
        f.code: f
        for f in gs.check(
            GuardItem(output="ok.", latency_ms=6100.5, input_tokens=1500, output_tokens=1600, cost_usd=0.051)
        )
    }
    assert {c for c in fs if c.startswith("budget")} == {
        "budget.latency_ms",
        "budget.cost_usd",
        "budget.total_tokens",
    }
    assert (
        fs["budget.latency_ms"].field == "latency_ms" and fs["budget.latency_ms"].excerpt == "6100.5 > 5000"
    )
    assert not [f for f in gs.check(GuardItem(output="ok.", latency_ms=float("nan"))) if f.guard == "budget"]
    fl = {
        f.code: f
        for f in gs.check(GuardItem(output="ok.", error="TimeoutError: user jane@x.com", fallback=True))
    }
    assert fl["error.producer"].excerpt == "TimeoutError"
    assert fl["fallback.used"].guard == "fallback"
    free = {f.code: f for f in gs.check(GuardItem(output="ok.", error="upstream said no to jane"))}
    assert free["error.producer"].excerpt == "error"

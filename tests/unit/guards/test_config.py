from __future__ import annotations

from typing import Any

import pytest

from rollguard.guards import GuardConfigError, build_guard_set


def test_default_set() -> None:
    gs = build_guard_set(engine="re")
    assert gs.names == ("pii", "secrets", "refusal", "injection", "length", "error", "fallback")
    sev = {g.name: g.severity.value for g in gs.guards}
    assert sev == {
        "pii": "warn",
        "secrets": "critical",
        "refusal": "info",
        "injection": "warn",
        "length": "warn",
        "error": "warn",
        "fallback": "warn",
    }


def test_shorthands_and_overrides() -> None:
    gs = build_guard_set(
        {
            "pii": False,
            "refusal": {"enabled": False},
            "secrets": {"severity": "warn"},
            "flags": {"fallback": False},
            "format": True,
            "injection": None,
        },
        engine="re",
    )
    assert gs.names == ("secrets", "injection", "format", "length", "error")
    assert gs.guards[0].severity.value == "warn"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"piii": {}}, "guards.piii: unknown guard"),
    ({"pii": {"kinds": ["email", "dna"]}}, "guards.pii.kinds[1]: unknown value 'dna'"),
    ({"pii": {"kinds": "email"}}, "guards.pii.kinds: must be a list of strings"),
    ({"pii": {"severity": "high"}}, "guards.pii.severity: must be one of info, warn, critical"),
    ({"pii": {"enabld": True}}, "guards.pii.enabld: unknown key"),
    ({"pii": "yes"}, "guards.pii: must be a mapping, true or false"),
    ({"secrets": {"fields": ["headers"]}}, "guards.secrets.fields[0]: unknown value 'headers'"),
    ({"refusal": {"languages": ["it"]}}, "guards.refusal.languages[0]: unknown value 'it'"),
    ({"refusal": {"start_window": -1}}, "guards.refusal.start_window: must be an integer >= 0"),
    ({"format": {"schema": {"type": "objekt"}}}, "guards.format.schema: not valid JSON Schema:"),
    ({"format": {"schema": [1]}}, "guards.format.schema: must be a JSON Schema object"),
    (
        {"format": {"model": "nowhere.models:Reply"}},
        "guards.format.model: cannot import 'nowhere.models:Reply'",
    ),
    ({"format": {"model": "guardtest_models.Reply"}}, "guards.format.model: must be 'package.module:Name'"),
    (
        {"format": {"schema": {}, "model": "guardtest_models:Reply"}},
        "guards.format: give either schema or model",
    ),
    ({"format": {"json": False}}, "guards.format.json: only JSON output is supported"),
    ({"banned": {}}, "guards.banned: needs at least one of substrings, regexes"),
    ({"banned": {"regexes": ["(unclosed"]}}, "guards.banned.regexes[0]: not a valid regex"),
    ({"banned": {"regexes": ["a*"]}}, "guards.banned.regexes[0]: matches the empty string"),
    ({"banned": {"substrings": [""]}}, "guards.banned.substrings[0]: must be a non-empty string"),
    ({"length": {"min_chars": 10, "max_chars": 5}}, "guards.length.max_chars: must be >= min_chars (10)"),
    ({"length": {"max_chars": True}}, "guards.length.max_chars: must be an integer >= 1"),
    ({"budget": {}}, "guards.budget: needs at least one limit"),
    ({"budget": {"latency_ms": -5}}, "guards.budget.latency_ms: must be a positive number"),
    ({"budget": {"cost_usd": float("inf")}}, "guards.budget.cost_usd: must be a positive number"),
    ({"budget": {"latency": 5}}, "guards.budget.latency: unknown key"),
    ({"flags": {"error": "yes"}}, "guards.flags.error: must be true or false"),
    ({"plugins": {"nope": {}}}, "guards.plugins.nope: no entry point 'nope' in group 'rollguard.guards'"),
    ({"plugins": ["x"]}, "guards.plugins: must be a mapping"),
]


@pytest.mark.parametrize(("cfg", "msg"), BAD)
def test_config_errors_name_the_field(cfg: dict[str, Any], msg: str) -> None:
    with pytest.raises(GuardConfigError) as ei:
        build_guard_set(cfg, engine="re")
    assert str(ei.value).startswith(msg), str(ei.value)
    assert str(ei.value).startswith(ei.value.field + ": ")


def test_bad_engine() -> None:
    with pytest.raises(GuardConfigError, match="engine: must be one of"):
        build_guard_set(engine="pcre")


def test_config_is_copied() -> None:
    cfg: dict[str, Any] = {"banned": {"substrings": ["foo"]}}
    gs = build_guard_set(cfg, engine="re")
    cfg["banned"]["substrings"].append("bar")
    from rollguard.guards import GuardItem

    assert not [f for f in gs.check(GuardItem(output="bar.")) if f.guard == "banned"]

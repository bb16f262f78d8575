"""Strict validation of the ``guards:`` mapping and construction of a GuardSet.

Every problem raises GuardConfigError naming the field path (``guards.pii.kinds[2]``),
so a bad rollout spec fails at load time, never inside the worker.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from . import patterns as pt
from .builtin import (
    BudgetGuard,
    ErrorFlagGuard,
    FallbackFlagGuard,
    FormatGuard,
    LengthGuard,
    PatternGuard,
    RefusalGuard,
)
from .types import Guard, GuardConfigError, Severity

__all__ = ["BUILTIN_GUARDS", "ENTRY_POINT_GROUP", "build_guards"]

ENTRY_POINT_GROUP = "rollguard.guards"
BUILTIN_GUARDS = ("pii", "secrets", "refusal", "injection", "format", "banned", "length", "budget", "flags")
_ON_BY_DEFAULT = {"pii", "secrets", "refusal", "injection", "length", "flags"}
_DEFAULT_SEVERITY = {
    "pii": Severity.WARN, "secrets": Severity.CRITICAL, "refusal": Severity.INFO, "injection": Severity.WARN,
    "format": Severity.WARN, "banned": Severity.WARN, "length": Severity.WARN, "budget": Severity.WARN,
    "flags": Severity.WARN,
}  # fmt: skip
_COMMON = {"enabled", "severity"}
_KEYS: dict[str, set[str]] = {
    "pii": {"kinds", "fields"},
    "secrets": {"kinds", "fields"},
    "refusal": {"languages", "non_answers", "start_window", "short_output_chars"},
    "injection": {"fields"},
    "format": {"json", "schema", "model", "strip_code_fence"},
    "banned": {"substrings", "regexes", "case_sensitive", "fields"},
    "length": {"min_chars", "max_chars", "empty", "truncated", "max_output_tokens", "mid_sentence_words"},
    "budget": set(BudgetGuard.FIELDS),
    "flags": {"error", "fallback"},
}


# ----------------------------------------------------------------------------- typed getters


class _Section:
    """One guard's mapping plus its path, with typed getters that raise precise errors."""

    def __init__(self, path: str, data: Mapping[str, Any]) -> None:
        self.path = path
        self.data = data

    def err(self, key: str, problem: str) -> GuardConfigError:
        return GuardConfigError(f"{self.path}.{key}", problem)

    def bool(self, key: str, default: bool) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            raise self.err(key, f"must be true or false, got {v!r}")
        return v

    def int(self, key: str, default: int | None, *, minimum: int = 0) -> int | None:
        v = self.data.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self.err(key, f"must be an integer >= {minimum}, got {v!r}")
        return v

    def number(self, key: str) -> float | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise self.err(key, f"must be a positive number, got {v!r}")
        return float(v)

    def strings(self, key: str, default: list[str], *, choices: tuple[str, ...] | None = None) -> list[str]:
        v = self.data.get(key, default)
        if isinstance(v, str) or not isinstance(v, list | tuple):
            raise self.err(key, f"must be a list of strings, got {v!r}")
        out = []
        for i, s in enumerate(v):
            if not isinstance(s, str) or not s:
                raise self.err(f"{key}[{i}]", f"must be a non-empty string, got {s!r}")
            if choices is not None and s not in choices:
                raise self.err(f"{key}[{i}]", f"unknown value {s!r}; expected one of {', '.join(choices)}")
            out.append(s)
        return out

    def severity(self, default: Severity) -> Severity:
        v = self.data.get("severity", default)
        try:
            return Severity(v)
        except ValueError:
            raise self.err("severity", f"must be one of info, warn, critical, got {v!r}") from None


def _section(path: str, raw: Any) -> _Section | None:
    """Normalise the shorthands: ``false`` disables, ``true``/``null``/``{}`` = defaults."""
    if raw is False:
        return None
    if raw is None or raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        raise GuardConfigError(path, f"must be a mapping, true or false, got {type(raw).__name__}")
    for k in raw:
        if not isinstance(k, str):
            raise GuardConfigError(path, f"keys must be strings, got {k!r}")
    sec = _Section(path, raw)
    if not sec.bool("enabled", True):
        return None
    return sec


def _check_keys(sec: _Section, allowed: set[str]) -> None:
    unknown = sorted(set(sec.data) - allowed - _COMMON)
    if unknown:
        raise sec.err(unknown[0], f"unknown key; allowed: {', '.join(sorted(allowed | _COMMON))}")


# ----------------------------------------------------------------------------- builders


def _pii(sec: _Section, engine: str) -> list[Guard]:
    kinds = sec.strings("kinds", list(pt.PII_KINDS), choices=pt.PII_KINDS)
    fields = sec.strings("fields", ["output"], choices=pt.INJECTION_FIELDS)
    specs = pt.pii_specs(kinds)
    sev = sec.severity(_DEFAULT_SEVERITY["pii"])
    return [PatternGuard("pii", sev, {f: specs for f in fields}, engine=engine)]


def _secrets(sec: _Section, engine: str) -> list[Guard]:
    kinds = sec.strings("kinds", list(pt.SECRET_KINDS), choices=pt.SECRET_KINDS)
    fields = sec.strings("fields", ["output"], choices=pt.INJECTION_FIELDS)
    specs = pt.secret_specs(kinds)
    sev = sec.severity(_DEFAULT_SEVERITY["secrets"])
    return [PatternGuard("secrets", sev, {f: specs for f in fields}, engine=engine)]


def _refusal(sec: _Section, engine: str) -> list[Guard]:
    langs = sec.strings("languages", list(pt.REFUSAL_LANGUAGES), choices=pt.REFUSAL_LANGUAGES)
    specs = pt.refusal_specs(
        langs,
        non_answers=sec.bool("non_answers", True),
        start_window=sec.int("start_window", 200) or 0,
        short_output_chars=sec.int("short_output_chars", 300) or 0,
    )
    sev = sec.severity(_DEFAULT_SEVERITY["refusal"])
    return [RefusalGuard("refusal", sev, {"output": specs}, engine=engine)]


def _injection(sec: _Section, engine: str) -> list[Guard]:
    fields = sec.strings("fields", list(pt.INJECTION_FIELDS), choices=pt.INJECTION_FIELDS)
    sev = sec.severity(_DEFAULT_SEVERITY["injection"])
    return [PatternGuard("injection", sev, {f: pt.injection_specs(f) for f in fields}, engine=engine)]


def _banned(sec: _Section, engine: str) -> list[Guard]:
    subs = sec.strings("substrings", [])
    regexes = sec.strings("regexes", [])
    if not subs and not regexes:
        raise GuardConfigError(sec.path, "needs at least one of substrings, regexes")
    case_sensitive = sec.bool("case_sensitive", False)
    flags = re.ASCII | (0 if case_sensitive else re.IGNORECASE)
    for i, r in enumerate(regexes):
        try:
            rx = re.compile(r, flags)
        except re.error as e:
            raise sec.err(f"regexes[{i}]", f"not a valid regex: {e}") from None
        if rx.search("") is not None:
            raise sec.err(f"regexes[{i}]", "matches the empty string")
    fields = sec.strings("fields", ["output"], choices=pt.INJECTION_FIELDS)
    specs = pt.banned_specs(subs, regexes, case_sensitive=case_sensitive)
    sev = sec.severity(_DEFAULT_SEVERITY["banned"])
    return [PatternGuard("banned", sev, {f: specs for f in fields}, engine=engine)]


def _import_model(sec: _Section, ref: Any) -> Any:
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise sec.err("model", f"must be 'package.module:Name', got {ref!r}")
    mod_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise sec.err("model", f"cannot import {ref!r}: {e}") from None
    return obj


def _format(sec: _Section, engine: str) -> list[Guard]:
    want_json = sec.bool("json", True)
    schema = sec.data.get("schema")
    model_ref = sec.data.get("model")
    if not want_json:
        raise sec.err("json", "only JSON output is supported; remove the format guard instead")
    if schema is not None and model_ref is not None:
        raise GuardConfigError(sec.path, "give either schema or model, not both")
    if schema is not None and not isinstance(schema, Mapping):
        raise sec.err("schema", f"must be a JSON Schema object, got {type(schema).__name__}")
    model = _import_model(sec, model_ref) if model_ref is not None else None
    sev = sec.severity(_DEFAULT_SEVERITY["format"])
    strip = sec.bool("strip_code_fence", True)
    try:
        guard = FormatGuard(sev, schema=schema, model=model, strip_code_fence=strip)
    except Exception as e:  # jsonschema SchemaError, pydantic schema errors
        key = "schema" if schema is not None else "model"
        kind = "JSON Schema" if schema is not None else "pydantic model"
        msg = getattr(e, "message", None) or str(e).splitlines()[0]
        raise sec.err(key, f"not valid {kind}: {msg}") from None
    return [guard]


def _length(sec: _Section, engine: str) -> list[Guard]:
    min_chars = sec.int("min_chars", 1) or 0
    max_chars = sec.int("max_chars", None, minimum=1)
    if max_chars is not None and max_chars < min_chars:
        raise sec.err("max_chars", f"must be >= min_chars ({min_chars})")
    return [
        LengthGuard(
            sec.severity(_DEFAULT_SEVERITY["length"]),
            min_chars=min_chars,
            max_chars=max_chars,
            empty=sec.bool("empty", True),
            truncated=sec.bool("truncated", True),
            max_output_tokens=sec.int("max_output_tokens", None, minimum=1),
            mid_sentence_words=sec.int("mid_sentence_words", 8, minimum=1) or 8,
        )
    ]


def _budget(sec: _Section, engine: str) -> list[Guard]:
    limits = {k: val for k in BudgetGuard.FIELDS if (val := sec.number(k)) is not None}
    if not limits:
        raise GuardConfigError(sec.path, f"needs at least one limit: {', '.join(BudgetGuard.FIELDS)}")
    return [BudgetGuard(sec.severity(_DEFAULT_SEVERITY["budget"]), limits)]


def _flags(sec: _Section, engine: str) -> list[Guard]:
    sev = sec.severity(_DEFAULT_SEVERITY["flags"])
    out: list[Guard] = []
    if sec.bool("error", True):
        out.append(ErrorFlagGuard(sev))
    if sec.bool("fallback", True):
        out.append(FallbackFlagGuard(sev))
    return out


_BUILDERS: dict[str, Callable[[_Section, str], list[Guard]]] = {
    "pii": _pii, "secrets": _secrets, "refusal": _refusal, "injection": _injection, "format": _format,
    "banned": _banned, "length": _length, "budget": _budget, "flags": _flags,
}  # fmt: skip


def _plugins(raw: Any) -> list[Guard]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        problem = f"must be a mapping of entry-point name to config, got {raw!r}"
        raise GuardConfigError("guards.plugins", problem)
    if not raw:
        return []
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    out: list[Guard] = []
    for name, cfg in raw.items():
        path = f"guards.plugins.{name}"
        sec = _section(path, cfg)
        if sec is None:
            continue
        ep = eps.get(name)
        if ep is None:
            known = ", ".join(sorted(eps)) or "none installed"
            raise GuardConfigError(path, f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r} ({known})")
        try:
            factory = ep.load()
            opts = {k: val for k, val in sec.data.items() if k != "enabled"}
            guard = factory(opts)
        except GuardConfigError:
            raise
        except Exception as e:
            raise GuardConfigError(path, f"plugin failed to build: {type(e).__name__}: {e}") from None
        if not isinstance(guard, Guard) or not isinstance(getattr(guard, "name", None), str):
            raise GuardConfigError(path, "plugin factory must return a Guard (name, severity, check)")
        out.append(guard)
    return out


def build_guards(config: Mapping[str, Any] | None, engine: str) -> list[Guard]:
    """Validate ``config`` (the ``guards:`` mapping) and build its guards in a stable order.

    >>> [g.name for g in build_guards({"pii": False, "budget": {"latency_ms": 500}}, "re")]
    ['secrets', 'refusal', 'injection', 'length', 'budget', 'error', 'fallback']
    """
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise GuardConfigError("guards", f"must be a mapping, got {type(config).__name__}")
    unknown = sorted(k for k in config if k not in BUILTIN_GUARDS and k != "plugins")
    if unknown:
        raise GuardConfigError(
            f"guards.{unknown[0]}",
            f"unknown guard; built-ins are {', '.join(BUILTIN_GUARDS)}; third-party guards go under plugins",
        )
    guards: list[Guard] = []
    for name in BUILTIN_GUARDS:
        if name not in config and name not in _ON_BY_DEFAULT:
            continue
        sec = _section(f"guards.{name}", config.get(name))
        if sec is None:
            continue
        _check_keys(sec, _KEYS[name])
        guards.extend(_BUILDERS[name](sec, engine))
    guards.extend(_plugins(config.get("plugins")))
    seen: set[str] = set()
    for g in guards:
        if g.name in seen:
            raise GuardConfigError("guards.plugins", f"duplicate guard name {g.name!r}")
        seen.add(g.name)
    return guards

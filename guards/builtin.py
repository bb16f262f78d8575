"""The built-in guards. Pattern guards share one scan inside a GuardSet; the others look
at numbers, flags or the parsed output."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .engine import HAVE_HYPERSCAN, Hit, PatternSpec, ReScanner, excerpt, make_scanner
from .types import Finding, GuardItem, Severity, new_finding

__all__ = [
    "BudgetGuard",
    "ErrorFlagGuard",
    "FallbackFlagGuard",
    "FormatGuard",
    "LengthGuard",
    "PatternGuard",
    "RefusalGuard",
]

FIELDS = ("output", "input")


def _text(item: GuardItem, field: str) -> str:
    value = getattr(item, field, "")
    return value if isinstance(value, str) else ""


def _by_span(sh: tuple[PatternSpec, Hit]) -> tuple[int, int]:
    return sh[1].start, sh[1].end


def _by_priority(sh: tuple[PatternSpec, Hit]) -> tuple[int, int, int]:
    return -sh[0].priority, sh[1].start, sh[1].end


class PatternGuard:
    """A guard defined by patterns per field. Standalone ``check`` runs its own scan;
    inside a GuardSet all pattern guards share one scan per field.

    >>> from .patterns import pii_specs
    >>> g = PatternGuard("pii", Severity.WARN, {"output": pii_specs(["email"])})
    >>> [(f.code, f.excerpt) for f in g.check(GuardItem(output="mail jane.doe@example.com"))]
    [('pii.email', 'j***@e***.com')]
    """

    def __init__(
        self,
        name: str,
        severity: Severity,
        specs: Mapping[str, Sequence[PatternSpec]],
        *,
        engine: str = "auto",
    ) -> None:
        self.name = name
        self.severity = severity
        self.specs = {f: tuple(s) for f, s in specs.items() if s}
        self._engine = engine
        self._scanners: dict[str, ReScanner] | None = None

    def applies(self, item: GuardItem) -> bool:
        """Whether the patterns should be evaluated for this item at all."""
        return True

    def pre(self, item: GuardItem) -> list[Finding]:
        """Findings that do not come from patterns (e.g. the producer's refusal flag)."""
        return []

    def findings(self, field: str, text: str, hits: Sequence[tuple[PatternSpec, Hit]]) -> list[Finding]:
        """Turn one field's hits into findings: overlaps resolved by priority (a card
        number is not also a phone number), one finding per code with all its spans."""
        if not hits:
            return []
        if len(hits) == 1:  # the common case: nothing to resolve or group
            spec, hit = hits[0]
            ex = excerpt(spec, text, hit)
            return [new_finding(self.name, spec.code, self.severity, field, ((hit.start, hit.end),), ex)]
        first_priority = hits[0][0].priority
        if all(spec.priority == first_priority for spec, _ in hits):
            kept = sorted(hits, key=_by_span)  # only a higher priority drops an overlapping hit
        else:
            kept = []
            for spec, hit in sorted(hits, key=_by_priority):
                if any(
                    hit.start < h.end and h.start < hit.end and s.priority > spec.priority for s, h in kept
                ):
                    continue
                kept.append((spec, hit))
            kept.sort(key=_by_span)
        by_code: dict[str, list[tuple[PatternSpec, Hit]]] = {}
        for spec, hit in kept:
            group = by_code.get(spec.code)
            if group is None:
                by_code[spec.code] = [(spec, hit)]
            else:
                group.append((spec, hit))
        out = []
        for code, group in by_code.items():
            if len(group) == 1:
                spans: tuple[tuple[int, int], ...] = ((group[0][1].start, group[0][1].end),)
            else:
                spans = tuple(sorted({(h.start, h.end) for _, h in group}))
            first_spec, first_hit = group[0]
            ex = excerpt(first_spec, text, first_hit)
            out.append(new_finding(self.name, code, self.severity, field, spans, ex))
        return out

    def check(self, item: GuardItem) -> list[Finding]:
        out = self.pre(item)
        if not self.applies(item):
            return out
        if self._scanners is None:
            eng = "hyperscan" if self._engine in ("auto", "hyperscan") and HAVE_HYPERSCAN else "re"
            self._scanners = {f: make_scanner(s, eng) for f, s in self.specs.items()}
        for field in FIELDS:
            scanner = self._scanners.get(field)
            if scanner is None:
                continue
            text = _text(item, field)
            hits = [(scanner.specs[h.spec], h) for h in scanner.scan(text)]
            out.extend(self.findings(field, text, hits))
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_scanners"] = None  # hyperscan databases do not pickle; rebuilt lazily
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class RefusalGuard(PatternGuard):
    """Refusal phrases, unless the producer says whether it refused (then trust it)."""

    def applies(self, item: GuardItem) -> bool:
        return item.refused is None

    def pre(self, item: GuardItem) -> list[Finding]:
        if item.refused is True:
            return [Finding(self.name, "refusal.flag", self.severity, "refused", (), "refused=true")]
        return []


_FENCE = re.compile(r"^[ \t]*```", re.MULTILINE)
_LIST_LINE = re.compile(r"^\s*(?:[-*+>#|]|\d+[.)]\s)")


class LengthGuard:
    """Empty, too short, too long, and truncated outputs.

    Truncated means one of: an unclosed code fence (odd number of lines starting
    with three backticks); ``output_tokens >= max_output_tokens`` when that cap is
    configured; or the output stops mid-sentence: its last line is prose of at least
    ``mid_sentence_words`` words (not a list item, heading, table or quote) ending in
    a letter, digit or one of ``,;:-(``.

    >>> g = LengthGuard(Severity.WARN, max_chars=10)
    >>> [f.code for f in g.check(GuardItem(output="x" * 11))]
    ['length.too_long']
    >>> [f.code for f in g.check(GuardItem(output="  "))]
    ['length.empty']
    """

    name = "length"

    def __init__(
        self, severity: Severity, *, min_chars: int = 1, max_chars: int | None = None, empty: bool = True,
        truncated: bool = True, max_output_tokens: int | None = None, mid_sentence_words: int = 8,
    ) -> None:  # fmt: skip
        self.severity = severity
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.empty = empty
        self.truncated = truncated
        self.max_output_tokens = max_output_tokens
        self.mid_sentence_words = mid_sentence_words

    def _f(self, code: str, excerpt: str) -> Finding:
        return Finding(self.name, code, self.severity, "output", (), excerpt)

    def check(self, item: GuardItem) -> list[Finding]:
        text = getattr(item, "output", "")
        if not isinstance(text, str):
            text = ""
        n = len(text)
        stripped = text.strip()  # no copy when there is nothing to strip
        if not stripped:
            return [self._f("length.empty", f"{n} chars")] if self.empty else []
        out = []
        if n < self.min_chars:
            out.append(self._f("length.too_short", f"{n} < {self.min_chars} chars"))
        if self.max_chars is not None and n > self.max_chars:
            out.append(self._f("length.too_long", f"{n} > {self.max_chars} chars"))
        if self.truncated:
            why = self._truncation(stripped, item.output_tokens)
            if why:
                out.append(self._f("length.truncated", why))
        return out

    def _truncation(self, stripped: str, output_tokens: int | None) -> str:
        cap = self.max_output_tokens
        if cap is not None and isinstance(output_tokens, int) and output_tokens >= cap:
            return f"output_tokens {output_tokens} >= {cap}"
        # "`" first: a one-character search is much cheaper than searching for "```"; a single
        # line (stripped) can only have a fence at its start
        if "`" in stripped:
            if "\n" not in stripped:
                if stripped.startswith("```"):
                    return "unclosed code fence"
            elif "```" in stripped and len(_FENCE.findall(stripped)) % 2 == 1:
                return "unclosed code fence"
        last = stripped[-1]
        if last.isalnum() or last in ",;:-(":
            line = stripped[stripped.rfind("\n") + 1 :]
            # split at most mid_sentence_words - 1 times: as many parts as words, capped there
            w = self.mid_sentence_words
            if not _LIST_LINE.match(line) and len(line.split(None, w - 1)) >= w:
                return "ends mid-sentence"
        return ""


class BudgetGuard:
    """Per-request budgets: a finding per exceeded limit (missing/NaN values are skipped).

    >>> g = BudgetGuard(Severity.WARN, {"latency_ms": 500.0})
    >>> [(f.code, f.excerpt) for f in g.check(GuardItem(output="", latency_ms=812.5))]
    [('budget.latency_ms', '812.5 > 500')]
    """

    name = "budget"
    FIELDS = ("latency_ms", "input_tokens", "output_tokens", "total_tokens", "cost_usd")

    def __init__(self, severity: Severity, limits: Mapping[str, float]) -> None:
        self.severity = severity
        self.limits = dict(limits)

    def check(self, item: GuardItem) -> list[Finding]:
        out = []
        for field, limit in self.limits.items():
            if field == "total_tokens":
                parts = (item.input_tokens, item.output_tokens)
                value: Any = None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
            else:
                value = getattr(item, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                continue
            if value > limit:
                ex = f"{value:g} > {limit:g}"
                out.append(Finding(self.name, f"budget.{field}", self.severity, field, (), ex))
        return out


_ERROR_KIND = re.compile(r"[A-Za-z_][\w.]{0,60}")


class ErrorFlagGuard:
    """The producer reported an error. The excerpt is the error's kind (the whole value
    if it is an identifier, or the identifier before a colon, e.g. ``TimeoutError``),
    else just ``error``: never its free-text message.

    >>> [f.excerpt for f in ErrorFlagGuard(Severity.WARN).check(GuardItem("", error="TimeoutError: x"))]
    ['TimeoutError']
    """

    name = "error"

    def __init__(self, severity: Severity) -> None:
        self.severity = severity

    def check(self, item: GuardItem) -> list[Finding]:
        err = item.error
        if not err:
            return []
        m = _ERROR_KIND.match(err) if isinstance(err, str) else None
        kind = m.group(0) if m and (m.end() == len(err) or err[m.end()] == ":") else "error"
        return [Finding(self.name, "error.producer", self.severity, "error", (), kind)]


class FallbackFlagGuard:
    """The producer served a fallback instead of the model's answer."""

    name = "fallback"

    def __init__(self, severity: Severity) -> None:
        self.severity = severity

    def check(self, item: GuardItem) -> list[Finding]:
        if item.fallback is True:
            return [Finding(self.name, "fallback.used", self.severity, "fallback", (), "fallback=true")]
        return []


_loads: Callable[[str], Any]
try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover
    from json import loads as _loads

_CODE_FENCE = re.compile(r"\A```[\w+-]*[ \t]*\n(.*)\n```\Z", re.DOTALL)


class FormatGuard:
    """Output must be JSON, optionally valid against a JSON Schema (validator compiled
    once) or a pydantic model. Excerpts name the failing path and rule, never values.

    >>> g = FormatGuard(Severity.WARN, schema={"type": "object", "required": ["a"]})
    >>> [(f.code, f.excerpt) for f in g.check(GuardItem(output='{"b": 1}'))]
    [('format.schema', '$: required')]
    >>> [f.code for f in g.check(GuardItem(output="not json"))]
    ['format.not_json']
    """

    name = "format"

    def __init__(
        self, severity: Severity, *, schema: Mapping[str, Any] | None = None, model: Any = None,
        strip_code_fence: bool = True,
    ) -> None:  # fmt: skip
        self.severity = severity
        self.strip_code_fence = strip_code_fence
        self._schema = schema
        self._validator: Any = None
        if schema is not None:
            import jsonschema

            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validator = cls(schema)
        self._adapter: Any = None
        if model is not None:
            import pydantic

            self._adapter = pydantic.TypeAdapter(model)

    def _f(self, code: str, excerpt: str) -> Finding:
        return Finding(self.name, code, self.severity, "output", (), excerpt)

    def check(self, item: GuardItem) -> list[Finding]:
        text = _text(item, "output").strip()
        if self.strip_code_fence and text.startswith("```"):
            m = _CODE_FENCE.match(text)
            if m:
                text = m.group(1)
        try:
            doc = _loads(text)
        except ValueError:
            return [self._f("format.not_json", "invalid JSON")]
        out = []
        if self._validator is not None:
            err = next(iter(self._validator.iter_errors(doc)), None)
            if err is not None:
                out.append(self._f("format.schema", f"{err.json_path}: {err.validator}"))
        if self._adapter is not None:
            import pydantic

            try:
                self._adapter.validate_python(doc)
            except pydantic.ValidationError as e:
                first = e.errors()[0]
                loc = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
                out.append(self._f("format.model", f"{loc}: {first['type']}"))
        return out

"""Core value types shared by every guard: what a guard sees and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = ["Finding", "Guard", "GuardConfigError", "GuardItem", "Severity"]


class Severity(StrEnum):
    """How bad a finding is; ``critical`` findings are alerted immediately by the core.

    >>> Severity("warn") is Severity.WARN
    True
    >>> sorted([Severity.CRITICAL, Severity.INFO], key=Severity.rank)
    [<Severity.INFO: 'info'>, <Severity.CRITICAL: 'critical'>]
    """

    INFO = "info"
    WARN = "warn"
    CRITICAL = "critical"

    def rank(self) -> int:
        """Numeric order (info < warn < critical), for max() over findings."""
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARN: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True, init=False)
class GuardItem:
    """One response as a guard sees it; the core builds it from the wire model.

    Guards get plain fields instead of the pydantic wire model so that ``guards/``
    stays importable without the product core (and stays cheap to construct).

    >>> GuardItem(output="hello", latency_ms=12.5).fallback
    False
    """

    output: str
    input: str = ""
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    fallback: bool = False
    refused: bool | None = None

    def __init__(
        self, output: str, input: str = "", latency_ms: float | None = None, input_tokens: int | None = None,
        output_tokens: int | None = None, cost_usd: float | None = None, error: str | None = None,
        fallback: bool = False, refused: bool | None = None,
    ) -> None:  # fmt: skip
        """The dataclass ``__init__``, written out: ingest builds one item per response, and a frozen
        dataclass sets each field through ``object.__setattr__`` (~0.3 µs more per item); the slot
        descriptors set them directly, as ``new_finding`` does for findings."""
        s0, s1, s2, s3, s4, s5, s6, s7, s8 = _SET_ITEM_FIELDS
        s0(self, output)
        s1(self, input)
        s2(self, latency_ms)
        s3(self, input_tokens)
        s4(self, output_tokens)
        s5(self, cost_usd)
        s6(self, error)
        s7(self, fallback)
        s8(self, refused)


_SET_ITEM_FIELDS = tuple(getattr(GuardItem, f.name).__set__ for f in fields(GuardItem))


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a guard found. Never carries raw matched text: ``excerpt`` is redacted.

    ``spans`` are character offsets into ``field`` (``item.output`` / ``item.input``);
    numeric and flag findings have no spans.

    >>> f = Finding("pii", "pii.email", Severity.WARN, "output", ((5, 21),), "j***@e***.com")
    >>> f.guard, f.spans[0]
    ('pii', (5, 21))
    """

    guard: str
    code: str
    severity: Severity
    field: str
    spans: tuple[tuple[int, int], ...]
    excerpt: str


_new = object.__new__
_SET_FIELDS = tuple(getattr(Finding, f).__set__ for f in ("guard", "code", "severity", "field", "spans", "excerpt"))


def new_finding(
    guard: str, code: str, severity: Severity, field: str, spans: tuple[tuple[int, int], ...], excerpt: str
) -> Finding:
    """``Finding(...)`` for the hot path: the same object, built without the frozen
    dataclass ``__init__`` (which costs ~0.4 µs more through ``object.__setattr__``).

    >>> new_finding("pii", "pii.ssn", Severity.WARN, "output", ((0, 11),), "***-**-6789") == Finding(
    ...     "pii", "pii.ssn", Severity.WARN, "output", ((0, 11),), "***-**-6789")
    True
    """
    f = _new(Finding)
    sg, sc, ss, sf, sp, se = _SET_FIELDS
    sg(f, guard)
    sc(f, code)
    ss(f, severity)
    sf(f, field)
    sp(f, spans)
    se(f, excerpt)
    return f


@runtime_checkable
class Guard(Protocol):
    """A small object with one verb. Third-party guards implement exactly this."""

    name: str
    severity: Severity

    def check(self, item: GuardItem) -> list[Finding]:
        """Return the findings for one item (empty list when it passes)."""
        ...


class GuardConfigError(ValueError):
    """A guard configuration problem; the message names the field path.

    >>> str(GuardConfigError("guards.length.max_chars", "must be a positive integer"))
    'guards.length.max_chars: must be a positive integer'
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self) -> tuple[type[GuardConfigError], tuple[str, str]]:
        return (type(self), (self.field, self.problem))

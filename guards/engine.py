"""The one-pass scan: all pattern guards of a field in one hyperscan database.

How the two engines stay identical: every pattern has a precise Python ``re`` form
(the source of truth for spans) and a hyperscan form that matches a *superset* of it
(lookarounds dropped, SOM-friendly). Hyperscan scans the field once and reports, per
pattern, the leftmost start of any candidate. Only patterns with candidates then walk the text with
``re.search(text, pos)`` from that start. A candidate the validator rejects is not
consumed (the walk retries one character later), so the accepted matches do not depend
on where the walk starts, as long as it starts no later than the first accepted match;
the hyperscan forms are built to guarantee exactly that.
The ``re`` engine runs every pattern (after a cheap literal prefilter) from position 0.
Validators (Luhn, mod-97, ...) run only on those matches, in both engines alike.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["HAVE_HYPERSCAN", "Hit", "HyperscanScanner", "PatternSpec", "ReScanner", "excerpt", "make_scanner"]

_hs: Any
try:  # pragma: no cover - depends on the platform
    import hyperscan as _hs

    HAVE_HYPERSCAN = True
except ImportError:  # pragma: no cover
    _hs = None
    HAVE_HYPERSCAN = False

Validator = Callable[[str, "re.Match[str]"], "tuple[int, int] | None"]
Redactor = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class PatternSpec:
    """One pattern of a pattern guard.

    ``regex`` is Python syntax with ASCII semantics (``\\w``, ``\\d``, ``\\b`` are ASCII in
    both engines). ``hs`` is the hyperscan form: ``""`` reuses ``regex``; ``None`` means
    "no hyperscan form", the pattern then always runs with ``re``. ``literals``: the
    pattern cannot match unless one of them occurs (lower-case when ``caseless``); it
    lets the ``re`` engine skip patterns cheaply. ``validate`` gets the text and match
    and returns the span to report (or ``None`` to drop the candidate). ``redact``
    builds the excerpt from the matched text; without it the excerpt is ``label``.
    ``start`` (optional) is a cheap regex matching every position where ``regex`` can
    begin; the walk then tries ``match`` only there instead of a slow ``search``.
    ``locate`` (optional, instead of ``start``) is a function ``(text, lo, hi)`` giving, in
    increasing order, positions in ``[lo, hi)`` that include every position where ``regex``
    can match there (e.g. the e-mail spec finds the local part before each ``@``).
    ``hs`` may be a tuple of alternatives (compiled as separate expressions). ``near``
    is an extra caseless hyperscan anchor for context rules: an accepted match may
    start anywhere from the anchor's start to ``near_chars`` after its end. ``lead``: an
    accepted match may start up to ``lead`` characters before the start of the hyperscan
    match of its form (e.g. the e-mail form starts at the ``@``).
    ``veto`` (optional): caseless hyperscan expressions, each a context prefix followed by
    the (single) ``hs`` form, for forms whose start is fixed by their end (fixed width, or a
    boundary character the form cannot contain). A veto match ending where a form match
    ends proves that no accepted match starts there (the validator rejects that start
    because of the context), so that form match opens no region: a common near-miss such as
    ``version 1.2.3.4`` then costs no Python walk at all. ``som``: track the start of match
    even for a bounded form (worth it for wide forms on short fields such as the input: the
    walk then starts where the match starts instead of ``width`` characters earlier).

    >>> PatternSpec("pii", "pii.ssn", r"\\d{3}-\\d{2}-\\d{4}").hs_pattern
    '\\\\d{3}-\\\\d{2}-\\\\d{4}'
    """

    guard: str
    code: str
    regex: str
    hs: str | tuple[str, ...] | None = ""
    caseless: bool = False
    literals: tuple[str, ...] = ()
    validate: Validator | None = None
    redact: Redactor | None = None
    label: str = ""
    priority: int = 0
    start: str | None = None
    locate: Callable[[str, int, int], list[int]] | None = None
    near: str | None = None
    near_chars: int = 0
    lead: int = 0
    veto: tuple[str, ...] = ()
    som: bool = False

    @property
    def hs_pattern(self) -> str | None:
        """The hyperscan form as one expression (alternatives joined)."""
        if self.hs == "":
            return self.regex
        if isinstance(self.hs, tuple):
            return "|".join(f"(?:{h})" for h in self.hs)
        return self.hs

    def hs_expressions(self) -> list[HsExpr]:
        """The expressions to compile: the hyperscan alternatives, the ``near`` anchor whose
        matches open a region ``near_chars`` long after them, and the vetoes."""
        if self.hs is None:
            return []
        alts = (self.regex,) if self.hs == "" else self.hs if isinstance(self.hs, tuple) else (self.hs,)
        out = [HsExpr(h, self.caseless, 0, self.lead, False, self.som) for h in alts]
        if self.near is not None:
            out.append(HsExpr(self.near, True, self.near_chars, 0, False, False))
        out.extend(HsExpr(v, True, 0, 0, True, False) for v in self.veto)
        return out


class HsExpr(NamedTuple):
    """One hyperscan expression of a spec: a region opens ``lead`` characters before its
    match and extends ``reach`` characters past it; a ``veto`` opens none (see PatternSpec)."""

    expr: str
    caseless: bool
    reach: int
    lead: int
    veto: bool
    som: bool


class Hit(NamedTuple):
    """A validated match: index into the scanner's specs and the span to report."""

    spec: int
    start: int
    end: int


def excerpt(spec: PatternSpec, text: str, hit: Hit) -> str:
    """Redacted excerpt for a hit (computed only for the hits that become findings)."""
    return spec.redact(text[hit.start : hit.end]) if spec.redact is not None else spec.label


def _re_flags(spec: PatternSpec) -> int:
    return re.ASCII | (re.IGNORECASE if spec.caseless else 0)


_sre_parser: Any = importlib.import_module("re._parser")
_LOOKAHEAD_SLACK = 8  # characters a trailing lookahead may read past a match (ours read <= 3)
# Hyperscan forms at most this wide skip start-of-match tracking (cheaper): a match ending
# at e starts at or after e - width. Wider or unbounded forms use HS_FLAG_SOM_LEFTMOST.
_SOM_WIDTH = 256


def max_width(regex: str, flags: int) -> int:
    """Longest match ``regex`` can produce (a huge number when unbounded).

    >>> max_width(r"\\d{3}-\\d{2}-\\d{4}", re.ASCII), max_width(r"a+", 0) > 10**6
    (11, True)
    """
    return int(_sre_parser.parse(regex, flags).getwidth()[1])


Interval = tuple[int, int, int]  # (first start, start bound (exclusive), endpos for search)


class ReScanner:
    """Pure-``re`` engine: prefilter by literals, then walk each pattern over the whole text.

    >>> s = ReScanner([PatternSpec("pii", "pii.ssn", r"\\d{3}-\\d{2}-\\d{4}", label="ssn")])
    >>> s.scan("id 123-45-6789.")
    [Hit(spec=0, start=3, end=14)]
    """

    engine = "re"

    def __init__(self, specs: Sequence[PatternSpec]) -> None:
        self.specs = tuple(specs)
        self._compiled = [re.compile(s.regex, _re_flags(s)) for s in self.specs]
        self._width = [max_width(s.regex, _re_flags(s)) for s in self.specs]
        self._starts = [None if s.start is None else re.compile(s.start, re.ASCII) for s in self.specs]
        self._lits = [s.literals for s in self.specs]
        self._caseless = [s.caseless for s in self.specs]
        self._walkers = [
            (rx.search, rx.match, None if st is None else st.finditer, spec.locate, spec.validate)
            for rx, st, spec in zip(self._compiled, self._starts, self.specs, strict=True)
        ]

    def _prefiltered(self, text: str, idx: Iterable[int]) -> list[tuple[int, list[Interval]]]:
        lower: str | None = None
        n = len(text)
        whole = [(0, n + 1, n)]
        out: list[tuple[int, list[Interval]]] = []
        for i in idx:
            lits = self._lits[i]
            if lits:
                if self._caseless[i]:
                    if lower is None:
                        lower = text.lower()
                    hay = lower
                else:
                    hay = text
                if not any(lit in hay for lit in lits):
                    continue
            out.append((i, whole))
        return out

    def candidates(self, text: str) -> list[tuple[int, list[Interval]]]:
        """Per pattern that may match: the regions where an accepted match may start."""
        return self._prefiltered(text, range(len(self.specs)))

    def scan(self, text: str, candidates: list[tuple[int, list[Interval]]] | None = None) -> list[Hit]:
        """All validated matches in ``text``, pattern by pattern, left to right."""
        if not text:
            return []
        return self._walk(text, self.candidates(text) if candidates is None else candidates)

    def _walk(self, text: str, candidates: Iterable[tuple[int, list[Interval]]]) -> list[Hit]:
        """Walk each pattern's regions with ``re``: a rejected candidate is not consumed
        (the walk retries one character later), an accepted one is."""
        hits: list[Hit] = []
        walkers = self._walkers
        for i, intervals in candidates:
            search, match, starts, locate, validate = walkers[i]
            pos = 0
            for first, bound, endpos in intervals:
                if pos < first:
                    pos = first
                if locate is not None:
                    for p in locate(text, pos, bound):
                        if p < pos:
                            continue
                        m = match(text, p, endpos)
                        if m is None:
                            continue
                        if validate is None:
                            s, e = m.span()
                        else:
                            span = validate(text, m)
                            if span is None:
                                continue
                            s, e = span
                        hits.append(Hit(i, s, e))
                        pos = e if e > p else p + 1
                    if pos < bound:
                        pos = bound
                    continue
                if starts is not None:  # try match only where the pattern can begin
                    for sm in starts(text, pos, bound):
                        p = sm.start()
                        if p < pos:
                            continue
                        m = match(text, p, endpos)
                        if m is None:
                            continue
                        if validate is None:
                            s, e = m.span()
                        else:
                            span = validate(text, m)
                            if span is None:
                                continue
                            s, e = span
                        hits.append(Hit(i, s, e))
                        pos = e if e > p else p + 1
                    if pos < bound:
                        pos = bound
                    continue
                while pos < bound:
                    m = search(text, pos, endpos)
                    if m is None:
                        break
                    ms = m.start()
                    if ms >= bound:
                        break
                    if validate is None:
                        s, e = m.span()
                    else:
                        span = validate(text, m)
                        if span is None:  # rejected: retry one character later, don't consume
                            pos = ms + 1
                            continue
                        s, e = span
                    hits.append(Hit(i, s, e))
                    pos = e if e > ms else ms + 1
        return hits


class HyperscanScanner(ReScanner):
    """One hyperscan database (UTF-8) over all patterns of a field.

    Every accepted ``re`` match starts inside some hyperscan match ``[som, end)`` of
    its pattern (``som`` from HS_FLAG_SOM_LEFTMOST, or ``end - width`` for hyperscan
    forms of bounded width, which avoids the cost of SOM tracking), so the walk only
    searches those regions; for patterns of bounded width it also stops the search
    ``width`` characters after the region (``endpos``), which cannot change a match
    that starts inside the region.
    Not thread-safe (one hyperscan scratch per scanner): use one GuardSet per thread.
    """

    engine = "hyperscan"

    def __init__(self, specs: Sequence[PatternSpec]) -> None:
        super().__init__(specs)
        assert _hs is not None
        self._re_only = [i for i, s in enumerate(self.specs) if s.hs is None]
        self._db: Any = None
        exprs: list[bytes] = []
        flags: list[int] = []
        self._expr_spec: list[int] = []  # expression id -> spec index
        self._expr_reach: list[int] = []  # expression id -> characters a region extends past the match
        self._expr_width: list[int] = []  # 0: start of match from SOM; else starts >= end - width
        self._expr_lead: list[int] = []  # expression id -> characters a region starts before the match
        self._vetoes: set[int] = set()  # expression ids of vetoes
        for i, spec in enumerate(self.specs):
            for expr, caseless, reach, lead, veto, force_som in spec.hs_expressions():
                try:
                    w = max_width(expr, re.ASCII | (re.IGNORECASE if caseless else 0))
                except Exception:  # not parseable as Python regex: ask hyperscan for the start
                    w = _SOM_WIDTH + 1
                som = (w > _SOM_WIDTH or force_som) and not veto
                exprs.append(expr.encode("utf-8"))
                flags.append(
                    _hs.HS_FLAG_UTF8
                    | (_hs.HS_FLAG_SOM_LEFTMOST if som else 0)
                    | (_hs.HS_FLAG_CASELESS if caseless else 0)
                )
                if veto:
                    self._vetoes.add(len(self._expr_spec))
                self._expr_spec.append(i)
                self._expr_reach.append(reach)
                self._expr_width.append(0 if som else max(w, 1))
                self._expr_lead.append(lead)
        self._exprs = tuple(exprs)
        self._flags = tuple(flags)
        if exprs:
            self._db = _compiled_db(self._exprs, self._flags)
        # how far past a region's end a search may need to read (endpos)
        self._pad = [w + _LOOKAHEAD_SLACK for w in self._width]

    def _regions(self, text: str) -> list[tuple[int, list[Interval]]] | None:
        """Per pattern with hyperscan hits: its merged candidate regions, by pattern index.
        ``None`` when the text cannot be scanned (lone surrogates are not UTF-8)."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        raw: list[tuple[int, int, int]] = []
        self._db.scan(data, _on_match, 0, raw)  # positional: keyword parsing costs ~0.25 µs a scan
        return self._regions_of(text, data, raw) if raw else []

    def _regions_of(
        self, text: str, data: bytes, raw: list[tuple[int, int, int]]
    ) -> list[tuple[int, list[Interval]]]:
        """Raw hyperscan matches ``(expression, from, to)`` (byte offsets into ``data``,
        ``from`` >= 0) -> merged candidate regions per pattern."""
        n = len(text)
        extra = len(data) - n  # bytes beyond one per character
        spec_of, reach, wid, lead = self._expr_spec, self._expr_reach, self._expr_width, self._expr_lead
        vetoes = self._vetoes
        if vetoes:
            for r in raw:
                if r[0] in vetoes:
                    vetoed = {(spec_of[x], e) for x, _, e in raw if x in vetoes}
                    raw = [r for r in raw if r[0] not in vetoes and (spec_of[r[0]], r[2]) not in vetoed]
                    if not raw:
                        return []
                    break
        if len(raw) == 1 and extra == 0:  # the common case (ASCII, one match), without the merging
            x, s, e = raw[0]
            w = wid[x]
            s = (e - w if w else s) - lead[x]
            hi = e + reach[x]
            i = spec_of[x]
            return [(i, [(s if s > 0 else 0, hi, min(n, hi + self._pad[i]))])]
        groups: dict[int, list[tuple[int, int]]] = {}
        if extra <= 256:
            # character offset c of byte offset b satisfies b - extra <= c <= b
            for x, s, e in raw:
                w = wid[x]
                s = (e - w if w else s) - extra - lead[x]
                region = (s if s > 0 else 0, e + reach[x])
                i = spec_of[x]
                g = groups.get(i)
                if g is None:
                    groups[i] = [region]
                else:
                    g.append(region)
        else:  # heavy non-ASCII: exact byte -> character offsets
            for x, s, e in raw:
                w = wid[x]
                ec = len(data[:e].decode("utf-8", "ignore"))
                sc = (ec - w if w else len(data[:s].decode("utf-8", "ignore"))) - lead[x]
                region = (sc if sc > 0 else 0, ec + 1 + reach[x])
                groups.setdefault(spec_of[x], []).append(region)
        out: list[tuple[int, list[Interval]]] = []
        pad = self._pad
        for i in sorted(groups) if len(groups) > 1 else groups:
            regions = groups[i]
            p = pad[i]
            if len(regions) == 1:
                lo, hi = regions[0]
                out.append((i, [(lo, hi, min(n, hi + p))]))
                continue
            regions.sort()
            merged: list[Interval] = []
            lo, hi = regions[0]
            for s, e in regions:
                if s <= hi:
                    if e > hi:
                        hi = e
                else:
                    merged.append((lo, hi, min(n, hi + p)))
                    lo, hi = s, e
            merged.append((lo, hi, min(n, hi + p)))
            out.append((i, merged))
        return out

    def candidates(self, text: str) -> list[tuple[int, list[Interval]]]:
        out = self._prefiltered(text, self._re_only) if self._re_only else []
        if self._db is None:
            return out
        regions = self._regions(text)
        if regions is None:
            return super().candidates(text)
        if out:
            regions.extend(out)
            regions.sort(key=lambda t: t[0])
        return regions

    def scan(self, text: str, candidates: list[tuple[int, list[Interval]]] | None = None) -> list[Hit]:
        if not text:
            return []
        if candidates is None:
            if self._re_only or self._db is None or not text.isascii():
                candidates = self.candidates(text)
            else:  # the common case, inlined: ASCII text (encodes exactly), hyperscan only
                data = text.encode()
                raw: list[tuple[int, int, int]] = []
                self._db.scan(data, _on_match, 0, raw)  # positional: keyword parsing costs ~0.25 µs a scan
                if not raw:
                    return []
                candidates = self._regions_of(text, data, raw)
            if not candidates:
                return []
        return self._walk(text, candidates)


def _on_match(x: int, start: int, end: int, flags: int, raw: list[tuple[int, int, int]]) -> None:
    raw.append((x, start, end))


_DB_CACHE: dict[tuple[tuple[bytes, ...], tuple[int, ...]], bytes] = {}


def _compiled_db(exprs: tuple[bytes, ...], flags: tuple[int, ...]) -> Any:
    """Compile once per process and pattern set (compiling takes ~0.1-0.3 s); every
    scanner still gets its own database copy and scratch, so scanners share no state."""
    blob = _DB_CACHE.get((exprs, flags))
    if blob is None:
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        n = len(exprs)
        db.compile(expressions=list(exprs), ids=list(range(n)), elements=n, flags=list(flags))
        if len(_DB_CACHE) < 64:
            _DB_CACHE[(exprs, flags)] = _hs.dumpb(db)
        return db
    db = _hs.loadb(blob, _hs.HS_MODE_BLOCK)
    db.scratch = _hs.Scratch(db)
    return db


def make_scanner(specs: Sequence[PatternSpec], engine: str) -> ReScanner:
    """Build the scanner for ``engine`` ("hyperscan" or "re")."""
    if engine == "hyperscan":
        return HyperscanScanner(specs)
    return ReScanner(specs)

"""GuardSet: the enabled guards of a feature, with one combined scan per text field."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .builtin import FIELDS, PatternGuard, RefusalGuard
from .config import build_guards
from .engine import HAVE_HYPERSCAN, Hit, PatternSpec, ReScanner, make_scanner
from .types import Finding, Guard, GuardConfigError, GuardItem, Severity

__all__ = ["GuardSet", "build_guard_set"]

ENGINES = ("auto", "hyperscan", "re")


class GuardSet:
    """The enabled guards. All pattern guards of a field share ONE scanner (one
    hyperscan database), so each text field is scanned once however many guards
    there are. ``check`` never raises: a guard that fails yields an
    ``<guard>.internal_error`` finding (severity info) instead of crashing the worker.

    Pickles as its config (hyperscan databases don't pickle) and rebuilds on load.

    >>> gs = build_guard_set({"budget": {"latency_ms": 1000}}, engine="re")
    >>> gs.names
    ('pii', 'secrets', 'refusal', 'injection', 'length', 'budget', 'error', 'fallback')
    >>> [(f.guard, f.code, f.excerpt) for f in gs.check(GuardItem(output="Mail me: jane.doe@example.com"))]
    [('pii', 'pii.email', 'j***@e***.com')]
    """

    def __init__(self, guards: list[Guard], *, engine: str, config: Mapping[str, Any] | None, requested: str):
        self.guards = tuple(guards)
        self.names: tuple[str, ...] = tuple(g.name for g in guards)
        self.engine = engine
        self._config = config
        self._requested = requested
        self._pattern = [g for g in guards if isinstance(g, PatternGuard)]
        self._other = [g for g in guards if not isinstance(g, PatternGuard)]
        # pattern guards with their own pre-scan logic (e.g. refusal trusts the producer's flag)
        base = PatternGuard
        self._special = [
            g for g in self._pattern if type(g).pre is not base.pre or type(g).applies is not base.applies
        ]
        # the built-in refusal guard has nothing to do before the scan when refused is None
        self._special_if_refused = all(type(g) is RefusalGuard for g in self._special)
        # per field: one scanner over the specs of all pattern guards, and spec -> guard
        self._scanners: list[tuple[str, ReScanner, list[PatternGuard]]] = []
        for field in FIELDS:
            specs: list[PatternSpec] = []
            owner: list[PatternGuard] = []
            for g in self._pattern:
                for spec in g.specs.get(field, ()):
                    specs.append(spec)
                    owner.append(g)
            if specs:
                self._scanners.append((field, make_scanner(specs, engine), owner))

    def pattern_specs(self, field: str) -> tuple[PatternSpec, ...]:
        """The patterns scanned on ``field`` ("output" / "input"), for benchmarks and docs."""
        return next((scanner.specs for f, scanner, _ in self._scanners if f == field), ())

    def check(self, item: GuardItem) -> list[Finding]:
        """All findings for one item, in a stable order (scan fields, then other guards)."""
        out: list[Finding] = []
        skip: set[int] | None = None
        for g in self._special if not (self._special_if_refused and item.refused is None) else ():
            try:
                pre = g.pre(item)
                if pre:
                    out.extend(pre)
                if not g.applies(item):
                    skip = {id(g)} if skip is None else skip | {id(g)}
            except Exception as e:
                out.append(_internal(g, e))
                skip = {id(g)} if skip is None else skip | {id(g)}
        for field, scanner, owner in self._scanners:
            text = getattr(item, field, "")
            if not isinstance(text, str) or not text:
                continue
            try:
                hits = scanner.scan(text)
            except Exception:
                try:  # e.g. a hyperscan failure: the re engine gives the same answer
                    hits = scanner.scan(text, ReScanner.candidates(scanner, text))
                except Exception as e:
                    out.extend(_internal(g, e) for g in dict.fromkeys(owner) if skip is None or id(g) not in skip)
                    continue
            if hits:
                self._findings(field, text, scanner, owner, hits, skip, out)
        for og in self._other:
            try:
                res = og.check(item)
            except Exception as e:
                out.append(_internal(og, e))
                continue
            if res:
                out.extend([f for f in res if isinstance(f, Finding)])
        return out

    def _findings(
        self, field: str, text: str, scanner: ReScanner, owner: list[PatternGuard], hits: list[Hit],
        skip: set[int] | None, out: list[Finding],
    ) -> None:  # fmt: skip
        """Group one field's hits by guard (in guard order) and let each guard report them."""
        specs = scanner.specs
        first = owner[hits[0].spec]
        for h in hits:
            if owner[h.spec] is not first:
                break
        else:  # all hits belong to one guard (the common case)
            if skip is None or id(first) not in skip:
                try:
                    out.extend(first.findings(field, text, [(specs[h.spec], h) for h in hits]))
                except Exception as e:
                    out.append(_internal(first, e))
            return
        per_guard: dict[int, list[tuple[PatternSpec, Hit]]] = {}
        for h in hits:
            per_guard.setdefault(id(owner[h.spec]), []).append((specs[h.spec], h))
        for g in self._pattern:
            group = per_guard.get(id(g))
            if group and (skip is None or id(g) not in skip):
                try:
                    out.extend(g.findings(field, text, group))
                except Exception as e:
                    out.append(_internal(g, e))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_rebuild, (self._config, self._requested))

    def __repr__(self) -> str:
        return f"GuardSet(names={self.names!r}, engine={self.engine!r})"


def _internal(guard: Guard, exc: BaseException) -> Finding:
    name = getattr(guard, "name", "unknown")
    return Finding(str(name), f"{name}.internal_error", Severity.INFO, "", (), type(exc).__name__)


def _rebuild(config: Mapping[str, Any] | None, engine: str) -> GuardSet:
    return build_guard_set(config, engine=engine)


def build_guard_set(config: Mapping[str, Any] | None = None, *, engine: str = "auto") -> GuardSet:
    """Validate the ``guards:`` mapping and build the enabled set.

    ``config=None`` gives the default set: pii (warn), secrets (critical), refusal
    (info), injection (warn), length (warn), error and fallback flags (warn).
    ``engine``: "auto" (hyperscan when installed, else re), "hyperscan" or "re";
    both engines give identical findings.

    >>> try:
    ...     build_guard_set({"length": {"max_chars": 0}}, engine="re")
    ... except GuardConfigError as e:
    ...     print(e)
    guards.length.max_chars: must be an integer >= 1, got 0
    """
    if engine not in ENGINES:
        raise GuardConfigError("engine", f"must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "hyperscan" and not HAVE_HYPERSCAN:
        raise GuardConfigError("engine", "hyperscan is not installed (pip install hyperscan)")
    resolved = "hyperscan" if engine in ("auto", "hyperscan") and HAVE_HYPERSCAN else "re"
    frozen = copy.deepcopy(dict(config)) if isinstance(config, Mapping) else config
    guards = build_guards(frozen, resolved)
    return GuardSet(guards, engine=resolved, config=frozen, requested=engine)

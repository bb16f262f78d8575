"""flagd integration: keep a flagd flag-definition file in step with the control topic.

For services that already run flagd (or any OpenFeature flagd provider in file mode), rollguard writes the
file flagd watches (schema https://flagd.dev/schema/v0/flags.json). Each flag becomes an ``if`` chain over
the segment attributes that commands are scoped to; each branch serves baseline, candidate, or a
``fractional`` split keyed by the targeting key. The chain is compiled from :class:`FlagRollout` itself
(every combination of the scoped attribute values is evaluated, then branches that do not change any
outcome are dropped), so flagd and the in-process provider agree on every segment's weight.

Note: flagd buckets with its own hash (murmur3 of flag key + targeting key), so a given user may land in a
different arm under flagd than under :class:`RollguardProvider`; the proportions match. Pick one
integration per flag.

The file is replaced atomically (temp file in the same directory + ``os.replace``), so flagd never reads
a half-written document.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollguard.client.flags import FlagConfig, FlagRollout, RolloutBook, scope_matches
from rollguard.contracts import Command

if TYPE_CHECKING:
    from rollguard.client.subscriber import ControlState, ControlSubscriber

log = logging.getLogger(__name__)

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
#: Above this many segment combinations the if-chain would be unreadable; such a control state is a bug.
MAX_REGIONS = 4096

_Branch = tuple[dict[str, str], float]


def _split(cfg: FlagConfig, weight: float) -> Any:
    """A branch result: a variant name at 0 or 1, else a ``fractional`` split keyed by targetingKey.

    Whole percentages are written as weights summing to 100 (what every flagd understands); finer weights
    as basis points summing to 10000, which needs a flagd whose fractional weights are relative.
    """
    if weight <= 0.0:
        return cfg.baseline
    if weight >= 1.0:
        return cfg.candidate
    pct = weight * 100
    if abs(pct - round(pct)) < 1e-9:
        cand, total = round(pct), 100
    else:
        cand, total = min(max(round(weight * 10_000), 1), 9_999), 10_000
    return {"fractional": [[cfg.candidate, cand], [cfg.baseline, total - cand]]}


def _condition(seg: Mapping[str, str]) -> dict[str, Any]:
    tests = [{"==": [{"var": k}, seg[k]]} for k in sorted(seg)]
    return tests[0] if len(tests) == 1 else {"and": tests}


def _chain_weight(branches: list[_Branch], fallback: float, seg: Mapping[str, str]) -> float:
    for cond, weight in branches:
        if scope_matches(cond, seg):
            return weight
    return fallback


def compile_branches(rollout: FlagRollout) -> tuple[list[_Branch], float]:
    """The rollout as an ordered decision list ``[(segment condition, weight)]`` plus the fallback weight.

    Exact by construction: every combination of the scoped attributes' values (and "any other value") is
    a region; regions are ordered most specific first, so a condition only needs its own equalities; then
    each branch whose removal leaves every region's weight unchanged is dropped.
    """
    values: dict[str, set[str]] = {}
    for scope in rollout.scopes():
        for k, v in scope.items():
            values.setdefault(k, set()).add(v)
    attrs = sorted(values)
    axes: list[list[str | None]] = [[*sorted(values[a]), None] for a in attrs]
    n_regions = 1
    for axis in axes:
        n_regions *= len(axis)
    if n_regions > MAX_REGIONS:
        raise ValueError(f"{rollout.flag}: {n_regions} segment combinations; too many for a flagd if-chain")
    regions = [{a: v for a, v in zip(attrs, combo, strict=True) if v is not None}
               for combo in itertools.product(*axes)]
    truth = [(seg, rollout.weight_for(seg)) for seg in regions]
    fallback = rollout.weight_for({})
    branches = [(seg, w) for seg, w in sorted(truth, key=lambda t: (-len(t[0]), sorted(t[0].items()))) if seg]
    i = 0
    while i < len(branches):
        trial = branches[:i] + branches[i + 1:]
        if all(_chain_weight(trial, fallback, seg) == w for seg, w in truth):
            branches = trial
        else:
            i += 1
    return branches, fallback


def flagd_flag(rollout: FlagRollout) -> dict[str, Any]:
    """One flagd flag definition for ``rollout`` (variants are the arm names, their values the same)."""
    cfg = rollout.config
    branches, fallback = compile_branches(rollout)
    if branches:
        chain: list[Any] = []
        for seg, weight in branches:
            chain += [_condition(seg), _split(cfg, weight)]
        targeting: Any = {"if": [*chain, _split(cfg, fallback)]}
    else:
        result = _split(cfg, fallback)
        targeting = result if isinstance(result, dict) else {"if": [True, result]}
    return {
        "state": "ENABLED",
        "variants": {cfg.baseline: cfg.baseline, cfg.candidate: cfg.candidate},
        "defaultVariant": cfg.baseline,
        "targeting": targeting,
    }


def flagd_document(rollouts: Mapping[str, FlagRollout]) -> dict[str, Any]:
    """The whole flagd file for the given rollouts."""
    return {"$schema": FLAGD_SCHEMA, "flags": {k: flagd_flag(r) for k, r in sorted(rollouts.items())}}


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and ``os.replace``: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FlagdWriter:
    """Rewrites a flagd flag file whenever an accepted command changes one of ``flags``.

    With a :class:`ControlSubscriber` as ``source`` it hooks the subscriber (writes happen on its thread);
    with a :class:`ControlState` it seeds from it and you call :meth:`on_command` for later commands.
    The file is written once at construction, so flagd starts from the current state, not a stale file.
    """

    def __init__(self, path: str | os.PathLike[str], flags: Mapping[str, FlagConfig],
                 source: ControlSubscriber | ControlState | None = None) -> None:
        self.path = Path(path)
        self.writes = 0
        self.last_error: Exception | None = None
        self._lock = threading.Lock()
        self._last: bytes | None = None
        self._book = RolloutBook(flags, self._changed)
        if source is not None:
            self._book.bind(source)
        self.write()

    def render(self) -> bytes:
        """The current document as the bytes that would be written."""
        rollouts = {k: r for k in self._book.flags if (r := self._book.get(k)) is not None}
        return json.dumps(flagd_document(rollouts), indent=2, sort_keys=False).encode() + b"\n"

    def write(self) -> bool:
        """Write the current state if it differs from what was last written; True if the file changed."""
        with self._lock:
            data = self.render()
            if data == self._last and self.path.exists():
                return False
            write_atomic(self.path, data)
            self._last = data
            self.writes += 1
            return True

    def on_command(self, cmd: Command) -> bool:
        """Apply an accepted command (bare-ControlState use); True if the file was rewritten."""
        before = self.writes
        self._book.apply(cmd)
        return self.writes > before

    def close(self) -> None:
        """Unhook from the subscriber (the file stays: flagd keeps serving the last state)."""
        self._book.unbind()

    def _changed(self, rollout: FlagRollout, cmd: Command) -> None:
        try:
            self.write()
            self.last_error = None
        except Exception as exc:  # a full disk must not kill the subscriber; retried on the next change
            self.last_error = exc
            log.exception("writing flagd file %s after command %s failed", self.path, cmd.command_id)


__all__ = ["FlagConfig", "FlagdWriter", "compile_branches", "flagd_document", "flagd_flag", "write_atomic"]

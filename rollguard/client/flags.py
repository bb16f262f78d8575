"""From accepted control commands to "which arm does this user get": pure logic shared by every adapter.

The control topic keeps one current command per (flag, scope). A flag service needs the *effect* of those
commands for a concrete user: the candidate's share (weight) for the user's segment, and a sticky
bucketing of the user into baseline or candidate. :class:`FlagRollout` computes both; the OpenFeature
provider, the flagd file writer and plain callbacks all evaluate through it, so they agree.

Semantics (documented with a table in ``docs/flags.md``):

* weight starts at the configured ``default_weight``; a ``set_weight``/``promote`` with ``scope={}``
  replaces it (the stage weight);
* per scope: ``set_weight``/``promote`` -> that weight; ``rollback`` -> 0; ``pause`` -> the weight
  frozen when the pause arrived (the command's own weight if it carries one); ``resume`` -> lifts the
  pause/rollback held at that scope (or, with a weight, sets it);
* the most specific matching scope wins (more attributes = more specific); on ties rollback beats pause
  beats the rest, then the newer command wins;
* safety override: a rollback also beats any *older* more specific command it covers (a newer finer
  command, e.g. a deliberate re-enable of one sub-segment, still wins) - the same rule the policy uses,
  where a rolled-back scope is never partially re-exposed by an earlier, finer weight;
* a ``promote``/``set_weight`` over a scope supersedes older, finer ``promote``/``set_weight`` commands
  inside it (an expansion's per-segment weights end when the rollout is promoted for everyone); holds stay;
* kill switch: ``rollback`` with ``scope={}`` puts everyone on baseline until a later ``scope={}``
  command replaces it.

Bucketing: ``bucket(flag, key) = int(sha1(f"{flag}:{key}")[:8 bytes], big-endian) / 2**64`` in [0, 1);
the user gets the candidate iff ``bucket < weight``. SHA-1 here is a uniform, stable, stdlib hash, not a
security measure. Since the comparison is a threshold, raising the weight only adds users to the
candidate (nobody flips back and forth while a rollout widens), and lowering it only removes users.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from rollguard.contracts import Action, Command, scope_label

if TYPE_CHECKING:
    from rollguard.client.subscriber import ControlState, ControlSubscriber
    from rollguard.config import Settings
    from rollguard.signing import Verifier

log = logging.getLogger(__name__)

Segment = Mapping[str, str]

_HOLDS = (Action.PAUSE, Action.ROLLBACK)
_RANK = {Action.ROLLBACK: 3, Action.PAUSE: 2}


def bucket(flag: str, targeting_key: str) -> float:
    """The user's sticky position in [0, 1) for ``flag``; same inputs, same bucket, on every host."""
    digest = hashlib.sha1(f"{flag}:{targeting_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def scope_matches(scope: Mapping[str, str], segment: Segment) -> bool:
    """A scope covers a segment when every scope attribute has the same value there ({} covers all)."""
    return all(segment.get(k) == v for k, v in scope.items())


@dataclass(frozen=True)
class FlagConfig:
    """What the flag service knows that commands do not: the arm names and the weight before any command."""

    baseline: str = "baseline"
    candidate: str = "canary"
    default_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.default_weight <= 1.0:
            raise ValueError(f"default_weight must be in [0, 1], got {self.default_weight}")
        if self.baseline == self.candidate:
            raise ValueError("baseline and candidate must be different variants")


class Resolution(NamedTuple):
    """The candidate weight for one segment and the command that decided it (None = configured default)."""

    weight: float
    command: Command | None
    rule: str  # "default" | "kill_switch" | "rollback" | "pause" | "set_weight" | "promote" | "resume"


@dataclass(frozen=True)
class _Entry:
    command: Command
    #: weightless pause: the entries in force when it arrived (its frozen weight is evaluated per segment)
    frozen_from: Mapping[str, _Entry] | None = None
    #: a hold (pause/rollback): the non-hold entry it replaced at its scope, restored by a weightless resume
    lifted: _Entry | None = None

    @property
    def transparent(self) -> bool:
        """Says nothing about the weight (weightless resume/set_weight/promote): evaluation looks past it."""
        return self.command.action not in _HOLDS and self.command.weight is None

    @property
    def is_hold(self) -> bool:
        return self.command.action in _HOLDS


class FlagRollout:
    """The evaluable rollout state of one flag. Immutable: :meth:`apply` returns a new instance.

    Immutability is what makes adapters thread-safe cheaply: the subscriber thread builds a new rollout and
    swaps the reference, evaluations keep reading a consistent snapshot without taking a lock.
    """

    __slots__ = ("_entries", "config", "flag", "last_command")

    def __init__(self, flag: str, config: FlagConfig | None = None, *,
                 _entries: Mapping[str, _Entry] | None = None, _last: Command | None = None) -> None:
        self.flag = flag
        self.config = config or FlagConfig()
        self._entries: Mapping[str, _Entry] = _entries or {}
        self.last_command: Command | None = _last

    @classmethod
    def from_commands(cls, flag: str, config: FlagConfig | None, commands: Iterable[Command]) -> FlagRollout:
        """Rebuild from a snapshot (``ControlState.latest``), applying the flag's commands in seq order."""
        rollout = cls(flag, config)
        for cmd in sorted((c for c in commands if c.flag == flag), key=lambda c: c.seq):
            rollout = rollout.apply(cmd)
        return rollout

    @property
    def last_seq(self) -> int:
        return self.last_command.seq if self.last_command else -1

    @property
    def commands(self) -> list[Command]:
        """The commands currently in force (one per scope), oldest first."""
        return sorted((e.command for e in self._entries.values()), key=lambda c: c.seq)

    def apply(self, cmd: Command) -> FlagRollout:
        """The rollout after ``cmd``; ``self`` when it is for another flag or not newer than the last one."""
        if cmd.flag != self.flag or cmd.seq <= self.last_seq:
            return self
        key = cmd.control_key
        prev = self._entries.get(key)
        entries = dict(self._entries)
        if cmd.action == Action.RESUME and cmd.weight is None:
            restored = prev.lifted if prev is not None and prev.is_hold else None
            entries[key] = restored if restored is not None else _Entry(cmd)
        elif cmd.action in _HOLDS:
            if prev is not None and prev.is_hold:
                lifted = prev.lifted
            else:
                lifted = prev if prev is not None and not prev.transparent else None
            frozen = dict(self._entries) if cmd.action == Action.PAUSE and cmd.weight is None else None
            entries[key] = _Entry(cmd, frozen, lifted)
        else:
            entries[key] = _Entry(cmd)
            if cmd.action in (Action.PROMOTE, Action.SET_WEIGHT) and cmd.weight is not None:
                # a stage weight set over a scope supersedes older, finer stage weights inside it (an
                # expansion's per-segment weights end when the rollout is promoted for everyone); holds stay
                scope = set(cmd.scope.items())
                for k, e in list(entries.items()):
                    finer = scope < set(e.command.scope.items())
                    if k != key and finer and not e.is_hold and e.command.seq < cmd.seq:
                        del entries[k]
        return FlagRollout(self.flag, self.config, _entries=entries, _last=cmd)

    # ---------------------------------------------------------------------------------------- evaluation

    def resolve(self, segment: Segment) -> Resolution:
        """The candidate weight for ``segment`` and why (see the module docstring for the rules)."""
        return self._resolve(self._entries, segment)

    def _resolve(self, entries: Mapping[str, _Entry], segment: Segment) -> Resolution:
        glob = entries.get(self.flag)
        if glob is not None and glob.command.action == Action.ROLLBACK:
            return Resolution(0.0, glob.command, "kill_switch")
        matching = [e for e in entries.values()
                    if not e.transparent and scope_matches(e.command.scope, segment)]
        if not matching:
            return Resolution(self.config.default_weight, None, "default")
        best = max(matching,
                   key=lambda e: (len(e.command.scope), _RANK.get(e.command.action, 1), e.command.seq))
        newer_rollbacks = [e.command for e in matching
                           if e.command.action == Action.ROLLBACK and e.command.seq > best.command.seq]
        if newer_rollbacks:
            return Resolution(0.0, max(newer_rollbacks, key=lambda c: c.seq), "rollback")
        cmd = best.command
        if cmd.action == Action.ROLLBACK:
            return Resolution(0.0, cmd, "rollback")
        if cmd.action == Action.PAUSE and cmd.weight is None:
            return Resolution(self._resolve(best.frozen_from or {}, segment).weight, cmd, "pause")
        assert cmd.weight is not None  # weightless non-holds are transparent
        return Resolution(cmd.weight, cmd, cmd.action.value)

    def weight_for(self, segment: Segment) -> float:
        """The candidate's share of users in ``segment`` (0 = all baseline, 1 = all candidate)."""
        return self.resolve(segment).weight

    def serves_candidate(self, targeting_key: str, segment: Segment) -> bool:
        """Whether this user, in this segment, gets the candidate (sticky: see :func:`bucket`)."""
        weight = self.weight_for(segment)
        if weight <= 0.0:
            return False
        return weight >= 1.0 or bucket(self.flag, targeting_key) < weight

    def variant_for(self, targeting_key: str, segment: Segment) -> str:
        """The arm name this user gets: ``config.candidate`` or ``config.baseline``."""
        cfg = self.config
        return cfg.candidate if self.serves_candidate(targeting_key, segment) else cfg.baseline

    def scopes(self) -> list[dict[str, str]]:
        """Every scope that can influence evaluation (including those inside frozen pause snapshots)."""
        seen: dict[str, dict[str, str]] = {}
        stack: list[Mapping[str, _Entry]] = [self._entries]
        while stack:
            entries = stack.pop()
            for e in entries.values():
                seen.setdefault(scope_label(e.command.scope), dict(e.command.scope))
                if e.frozen_from:
                    stack.append(e.frozen_from)
        return [seen[k] for k in sorted(seen)]

    def __repr__(self) -> str:
        cmds = ", ".join(f"{c.action.value}@{scope_label(c.scope) or '*'}#{c.seq}" for c in self.commands)
        return f"FlagRollout({self.flag!r}, default={self.config.default_weight}, [{cmds}])"


# ------------------------------------------------------------------------------------ adapter plumbing

RolloutListener = Callable[[FlagRollout, Command], None]


class RolloutBook:
    """The rollouts of the configured flags, kept current from a subscriber or a :class:`ControlState`.

    Adapters share this plumbing: it seeds from what the subscriber already accepted and hooks its
    ``on_change`` (chaining any callback already there) under one lock, so a command accepted while
    seeding is neither lost nor applied twice (``apply`` ignores seqs it has seen).
    """

    def __init__(self, flags: Mapping[str, FlagConfig], listener: RolloutListener | None = None) -> None:
        self._rollouts: dict[str, FlagRollout] = {k: FlagRollout(k, cfg) for k, cfg in flags.items()}
        self._listener = listener
        self._lock = threading.RLock()
        self._hooked: Any = None
        self._hook: Callable[[Command], None] | None = None
        self._prev: Callable[[Command], None] | None = None

    @property
    def flags(self) -> list[str]:
        return list(self._rollouts)

    def get(self, flag: str) -> FlagRollout | None:
        """The current rollout of ``flag`` (a consistent, immutable snapshot), None when not configured."""
        return self._rollouts.get(flag)

    def apply(self, cmd: Command) -> FlagRollout | None:
        """Apply one accepted command; returns the new rollout if it changed one, and tells the listener."""
        with self._lock:
            current = self._rollouts.get(cmd.flag)
            if current is None:
                return None
            updated = current.apply(cmd)
            if updated is current:
                return None
            self._rollouts[cmd.flag] = updated
            if self._listener is not None:
                try:
                    self._listener(updated, cmd)
                except Exception:  # never break the subscriber's poll loop
                    log.exception("rollout listener failed on command %s", cmd.command_id)
            return updated

    def seed(self, commands: Iterable[Command]) -> list[str]:
        """Apply a snapshot of accepted commands in seq order; returns the flags that changed."""
        changed: list[str] = []
        for cmd in sorted(commands, key=lambda c: (c.flag, c.seq)):
            if self.apply(cmd) is not None and cmd.flag not in changed:
                changed.append(cmd.flag)
        return changed

    def bind(self, source: ControlSubscriber | ControlState) -> None:
        """Follow ``source``: a subscriber is hooked and seeded; a bare state is only seeded (call
        :meth:`apply` yourself for later commands)."""
        with self._lock:
            if hasattr(source, "on_change") and hasattr(source, "state"):
                prev = source.on_change

                def hook(cmd: Command) -> None:
                    self.apply(cmd)
                    if prev is not None:
                        prev(cmd)

                source.on_change = hook
                self._hooked, self._hook, self._prev = source, hook, prev
                state = source.state
            else:
                state = source
            self.seed(list(state.latest.values()))

    def unbind(self) -> None:
        """Stop following; restores the subscriber's previous callback if ours is still the one installed."""
        with self._lock:
            if self._hooked is not None and self._hooked.on_change is self._hook:
                self._hooked.on_change = self._prev
            self._hooked = self._hook = self._prev = None


@dataclass
class Follower:
    """A running subscriber plus the rollouts it keeps current; ``close()`` stops both."""

    subscriber: ControlSubscriber
    book: RolloutBook
    flags: list[str] = field(default_factory=list)

    def rollout(self, flag: str) -> FlagRollout | None:
        return self.book.get(flag)

    def close(self) -> None:
        self.book.unbind()
        self.subscriber.close()


def follow(settings: Settings | None, verifier: Verifier | None, flags: Mapping[str, FlagConfig],
           on_rollout_change: RolloutListener, *, start: bool = True) -> Follower:
    """The plain-callback integration: ``on_rollout_change(rollout, command)`` after every accepted command
    for a configured flag, from the subscriber's thread (``start=False`` to drive ``poll`` yourself)."""
    from rollguard.client.subscriber import ControlSubscriber

    sub = ControlSubscriber(settings, verifier=verifier)
    book = RolloutBook(flags, on_rollout_change)
    book.bind(sub)
    if start:
        sub.start()
    return Follower(sub, book, list(flags))


__all__ = ["FlagConfig", "FlagRollout", "Follower", "Resolution", "RolloutBook", "bucket", "follow",
           "scope_matches"]

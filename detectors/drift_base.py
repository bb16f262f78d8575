"""Shared episode bookkeeping for the drift detectors in :mod:`.drift`.

A river detector only says "a change was detected at this update". Alerting and the
baseline-vs-candidate classification need more: is the stream *still* in a drifted state,
when did that episode begin, and which way did it move. :class:`EpisodeTracker` keeps that
state with the same rules for every level-based detector, so the rules are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Direction = Literal["up", "down", "both"]

_DIRECTIONS = ("up", "down", "both")


def check_direction(direction: str) -> Direction:
    """Validate a ``direction`` argument (which change counts as a regression)."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    return direction  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class DriftState:
    """A detector's episode state, copied out so it can be compared or logged.

    ``since`` is the detector's update index (1-based) at which the current episode began and
    ``since_time`` the caller's event time at that update (``None`` if no time was given).
    """

    in_drift: bool
    since: int | None = None
    since_time: float | None = None
    detected: bool = False
    direction: str | None = None


class EpisodeLike(Protocol):
    """Anything exposing episode state: every detector here, or a :class:`DriftState`."""

    @property
    def in_drift(self) -> bool: ...

    @property
    def since(self) -> int | None: ...

    @property
    def since_time(self) -> float | None: ...


class EpisodeTracker:
    """Episode rules shared by the level-based detectors (ADWIN, Page-Hinkley, KSWIN).

    Each detection comes with a level before (``pre``) and after (``post``) the change.

    * A detection in the regression ``direction`` opens an episode (``in_drift``); ``since``
      records the update index / event time, ``reference`` the pre-change level.
    * Further detections in the same sense keep the episode open and raise ``drift_detected``
      again (the alert gate de-duplicates them); the most extreme post level is kept as ``peak``.
    * The episode closes when the detector's current level (``level``) has been at least
      halfway back from ``peak`` to ``reference`` for ``settle`` consecutive checks, or at once
      when a detection in the opposite sense lands there. Without the level check a false
      alarm on a stationary stream would never close: nothing changes back.
    * Outside an episode, a detection in the non-regression sense sets
      ``improvement_detected`` (only when ``direction`` is one-sided).

    Why halfway: the detectors already decided that the level changed significantly; the
    halfway rule only decides whether that change undid the episode, and is symmetric with
    the onset so a stream returning to its old level always closes it.
    """

    def __init__(self, direction: Direction = "up", settle: int = 1) -> None:
        self.direction: Direction = check_direction(direction)
        self.settle = settle
        self.calm = 0
        self.n = 0
        self.drift_detected = False
        self.improvement_detected = False
        self.recovered = False
        self.in_drift = False
        self.since: int | None = None
        self.since_time: float | None = None
        self.reference: float | None = None
        self.peak: float | None = None
        self.sign = 0
        self.n_episodes = 0

    def tick(self, t: float | None) -> None:
        """Start an update: count it and clear the per-update flags."""
        self.n += 1
        self.drift_detected = False
        self.improvement_detected = False
        self.recovered = False

    def _is_regression(self, sign: int) -> bool:
        if self.direction == "both":
            return True
        return (sign > 0) == (self.direction == "up")

    def change(self, pre: float, post: float, t: float | None) -> None:
        """Record a detected change from level ``pre`` to level ``post`` at this update."""
        if post == pre:
            return
        sign = 1 if post > pre else -1
        if not self.in_drift:
            if self._is_regression(sign):
                self.in_drift = True
                self.since, self.since_time = self.n, t
                self.reference, self.peak, self.sign = pre, post, sign
                self.calm = 0
                self.drift_detected = True
                self.n_episodes += 1
            else:
                self.improvement_detected = True
            return
        assert self.peak is not None
        if sign == self.sign:
            self.drift_detected = True
            self.calm = 0
            if (post - self.peak) * sign > 0:
                self.peak = post
        elif self._back(post):
            self.close()

    def _back(self, x: float) -> bool:
        assert self.reference is not None and self.peak is not None
        return (x - self.reference) * self.sign <= 0.5 * abs(self.peak - self.reference)

    def level(self, x: float) -> None:
        """Check the current level; close the episode after ``settle`` calm checks in a row."""
        if not self.in_drift:
            return
        if self._back(x):
            self.calm += 1
            if self.calm >= self.settle:
                self.close()
        else:
            self.calm = 0

    def close(self) -> None:
        """End the current episode (recovery)."""
        self.in_drift = False
        self.recovered = True
        self.calm = 0
        self.since = self.since_time = None
        self.reference = self.peak = None
        self.sign = 0

    def state(self) -> DriftState:
        """A frozen copy of the episode state."""
        d = None if self.sign == 0 else ("up" if self.sign > 0 else "down")
        return DriftState(self.in_drift, self.since, self.since_time, self.drift_detected, d)

    _FIELDS = (
        "direction", "settle", "calm", "n", "drift_detected", "improvement_detected", "recovered",
        "in_drift", "since", "since_time", "reference", "peak", "sign", "n_episodes",
    )  # fmt: skip

    def __getstate__(self) -> tuple[object, ...]:
        # A tuple, not a dict: field names would dominate the pickle of a small tracker.
        return tuple(getattr(self, f) for f in self._FIELDS)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        for f, v in zip(self._FIELDS, s, strict=True):
            setattr(self, f, v)


class EpisodeMixin:
    """Exposes an :class:`EpisodeTracker` as river-style read-only attributes."""

    _ep: EpisodeTracker

    @property
    def n(self) -> int:
        """Number of updates seen."""
        return self._ep.n

    @property
    def drift_detected(self) -> bool:
        """A regression-direction change was detected at the last update."""
        return self._ep.drift_detected

    @property
    def improvement_detected(self) -> bool:
        """A change in the non-regression direction was detected at the last update."""
        return self._ep.improvement_detected

    @property
    def recovered(self) -> bool:
        """The episode ended at the last update."""
        return self._ep.recovered

    @property
    def in_drift(self) -> bool:
        """The stream is in a drift episode (see :class:`EpisodeTracker` for when it ends)."""
        return self._ep.in_drift

    @property
    def since(self) -> int | None:
        """Update index (1-based) at which the current episode began."""
        return self._ep.since

    @property
    def since_time(self) -> float | None:
        """Event time of the update at which the current episode began."""
        return self._ep.since_time

    @property
    def n_episodes(self) -> int:
        """Number of episodes opened so far."""
        return self._ep.n_episodes

    def state(self) -> DriftState:
        """A frozen copy of the episode state (for classification and logging)."""
        return self._ep.state()

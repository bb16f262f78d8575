"""Turning detector state into decisions: classification and alert gating."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .drift_base import EpisodeLike


class DriftKind(StrEnum):
    """What a detection means for the rollout."""

    NONE = "none"
    TRAFFIC_SHIFT = "traffic_shift"  # baseline and candidate both drifted: alert, no rollback
    CANDIDATE_REGRESSION = "candidate_regression"  # candidate only: feeds the rollout policy
    INPUT_SHIFT = "input_shift"  # only the inputs drifted: alert, canary analysis should hold


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of :func:`classify`. ``lag`` is candidate onset minus baseline onset."""

    kind: DriftKind
    reason: str
    lag: float | None = None
    pending: bool = False
    input_drift: bool = False


def _onset(s: EpisodeLike, use_time: bool) -> float | None:
    v = s.since_time if use_time else s.since
    return None if v is None else float(v)


def classify(
    baseline: EpisodeLike,
    candidate: EpisodeLike,
    input_drift: EpisodeLike | bool | None = None,
    *,
    tolerance_s: float = 300.0,
    tolerance_updates: int = 2000,
    now: float | None = None,
) -> Verdict:
    """Classify the drift state of one metric in one segment.

    Timing tolerance: the candidate and baseline count as drifting "together" when the
    baseline's episode began no more than ``tolerance_s`` seconds after the candidate's (if
    the baseline began first, by any amount, the candidate is just catching up: at 5 % weight
    it sees 19x fewer events, so it detects later in wall time). Onsets are compared in event
    time when both have ``since_time``; otherwise in update indices with
    ``tolerance_updates``, which is only meaningful when both streams see similar rates
    (shadow mode, A/A, 50/50 splits).

    A candidate-only episode younger than the tolerance (needs ``now``, same clock as the
    onsets) is reported as ``none`` with ``pending=True``: the baseline may still follow.

    Baseline-only drift is ``none`` (the per-detector alert still goes out).

    >>> from rollguard.detectors.drift import DriftState as S
    >>> classify(S(True, 900, 1000.0), S(True, 40, 1030.0)).kind.value
    'traffic_shift'
    >>> classify(S(False), S(True, 40, 1030.0), now=2000.0).kind.value
    'candidate_regression'
    >>> classify(S(False), S(True, 40, 1030.0), now=1100.0).pending
    True
    >>> classify(S(False), S(False), S(True, 5, 990.0)).kind.value
    'input_shift'
    """
    plain = isinstance(input_drift, bool) or input_drift is None
    inp = bool(input_drift) if plain else input_drift.in_drift  # type: ignore[union-attr]
    note = " (inputs drifted too)" if inp else ""
    if candidate.in_drift:
        use_time = candidate.since_time is not None and (
            not baseline.in_drift or baseline.since_time is not None
        )
        tol = tolerance_s if use_time else float(tolerance_updates)
        c0 = _onset(candidate, use_time)
        if baseline.in_drift:
            b0 = _onset(baseline, use_time)
            lag = None if c0 is None or b0 is None else c0 - b0
            if lag is None or lag >= -tol:
                return Verdict(
                    DriftKind.TRAFFIC_SHIFT, "baseline and candidate drifted together" + note, lag, False, inp
                )
            return Verdict(
                DriftKind.CANDIDATE_REGRESSION,
                f"candidate drifted {-lag:g} before the baseline (tolerance {tol:g})" + note,
                lag,
                False,
                inp,
            )
        if now is not None and c0 is not None and now - c0 <= tol:
            return Verdict(
                DriftKind.NONE, "candidate drifted; waiting for the baseline" + note, None, True, inp
            )
        return Verdict(
            DriftKind.CANDIDATE_REGRESSION, "candidate drifted, baseline did not" + note, None, False, inp
        )
    if baseline.in_drift:
        return Verdict(DriftKind.NONE, "baseline-only drift", None, False, inp)
    if inp:
        return Verdict(DriftKind.INPUT_SHIFT, "inputs drifted, outputs did not", None, False, True)
    return Verdict(DriftKind.NONE, "no drift")


class DriftClassifier:
    """:func:`classify` with fixed tolerances, remembering the last verdict per key.

    ``changed`` tells whether the last call changed the verdict for its key, so callers emit
    only transitions.
    """

    def __init__(self, tolerance_s: float = 300.0, tolerance_updates: int = 2000) -> None:
        self.tolerance_s = tolerance_s
        self.tolerance_updates = tolerance_updates
        self.last: dict[str, DriftKind] = {}
        self.changed = False

    def __call__(
        self,
        baseline: EpisodeLike,
        candidate: EpisodeLike,
        input_drift: EpisodeLike | bool | None = None,
        *,
        key: str = "",
        now: float | None = None,
    ) -> Verdict:
        """Classify and record the verdict under ``key``."""
        v = classify(
            baseline,
            candidate,
            input_drift,
            tolerance_s=self.tolerance_s,
            tolerance_updates=self.tolerance_updates,
            now=now,
        )
        self.changed = self.last.get(key, DriftKind.NONE) != v.kind
        self.last[key] = v.kind
        return v


@dataclass(frozen=True, slots=True)
class GateEvent:
    """An alert (episode began) or a recovery (episode over) for one detector."""

    kind: Literal["alert", "recovery"]
    key: str
    at: float
    episode_start: float
    detections: int


class EpisodeGate:
    """Turns raw detections into at most one alert and one recovery per episode.

    * A detection opens an episode; later detections extend it (``last_detection``).
    * The alert goes out when the episode opens, unless a cool-down is running; then it is
      deferred until the cool-down ends, and only if the episode is still open.
    * The episode closes when there has been no detection for ``quiet`` and the detector
      (if it reports one) is no longer ``in_drift``; a recovery is emitted if an alert was,
      and a ``cooldown`` starts.

    Time is whatever the caller passes as ``now`` (update index or event seconds), in the
    same units as ``quiet`` and ``cooldown``. A stream flapping for a duration ``T`` yields at
    most ``1 + T / (quiet + cooldown)`` alerts.

    >>> g = EpisodeGate("latency", quiet=100, cooldown=500)
    >>> events = [g.observe(i % 7 == 0 and i < 1000, float(i)) for i in range(3000)]
    >>> [(e.kind, e.at) for e in events if e]
    [('alert', 0.0), ('recovery', 1094.0)]
    """

    def __init__(self, key: str = "", quiet: float = 500.0, cooldown: float = 2000.0) -> None:
        self.key = key
        self.quiet = quiet
        self.cooldown = cooldown
        self.active = False
        self.alerted = False
        self.start = 0.0
        self.last_detection = 0.0
        self.detections = 0
        self.cooldown_until = float("-inf")
        self.alerts = 0

    def observe(self, detected: bool, now: float, in_drift: bool | None = None) -> GateEvent | None:
        """Feed one update's detection flag (and the detector's ``in_drift`` if it has one)."""
        if detected:
            if not self.active:
                self.active, self.alerted = True, False
                self.start, self.detections = now, 0
            self.detections += 1
            self.last_detection = now
        if not self.active:
            return None
        if not self.alerted and now >= self.cooldown_until:
            self.alerted = True
            self.alerts += 1
            return GateEvent("alert", self.key, now, self.start, self.detections)
        if now - self.last_detection >= self.quiet and not in_drift:
            self.active = False
            if self.alerted:
                self.cooldown_until = now + self.cooldown
                return GateEvent("recovery", self.key, now, self.start, self.detections)
        return None

    def tick(self, now: float, in_drift: bool | None = None) -> GateEvent | None:
        """Advance time without an update (e.g. on a timer), so recoveries are not late."""
        return self.observe(False, now, in_drift)

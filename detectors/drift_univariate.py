"""Univariate drift detectors wrapping river: ADWIN, Page-Hinkley and KSWIN.

Each class is a thin, picklable wrapper that fixes the river pitfalls for per-request AI
telemetry (see ``docs/detectors.md``) and adds episode state (``in_drift``, ``since``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from river import drift as rdrift

from .drift_base import Direction, EpisodeMixin, EpisodeTracker, check_direction


class BinaryRateDrift(EpisodeMixin):
    """ADWIN on a 0/1 stream (errors, refusals, fallbacks, guard failures, escalations).

    ADWIN (Bifet & Gavaldà 2007) keeps the longest recent window whose two halves have the
    same mean at confidence ``delta``; a cut means the rate changed. Unlike river's wrapper,
    which throws the whole window away after a detection, this keeps ADWIN's own post-cut
    window (as in the paper), so ``estimate`` stays meaningful right after a change.

    ``direction="up"`` (default) counts only rate increases as drift; decreases set
    ``improvement_detected``. The episode ends when a later cut brings the rate at least
    halfway back to the pre-change rate.

    >>> import random
    >>> rng = random.Random(7)
    >>> det = BinaryRateDrift()
    >>> for i in range(6000):
    ...     _ = det.update(rng.random() < (0.02 if i < 4000 else 0.08))
    ...     if det.drift_detected and det.since == det.n:
    ...         print("episode began at update", det.since)
    episode began at update 4288
    >>> det.in_drift, round(det.estimate, 3), round(det.reference, 3)
    (True, 0.057, 0.023)
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        direction: Direction = "up",
        min_window_length: int = 5,
        grace_period: int = 100,
    ) -> None:
        self.delta = delta
        self.clock = clock
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self._adwin = rdrift.ADWIN(
            delta=delta, clock=clock, min_window_length=min_window_length, grace_period=grace_period
        )
        self._ep = EpisodeTracker(check_direction(direction), settle=3)

    def update(self, x: bool | float, t: float | None = None) -> BinaryRateDrift:
        """Add one observation (``True``/1 = the bad outcome happened)."""
        ep, a = self._ep, self._adwin
        ep.tick(t)
        v = float(x)
        w0, s0 = a.width, a.total
        a.update(v)
        if a.drift_detected:
            # Keep ADWIN's post-cut window (river would reset it on the next update).
            a._drift_detected = False
            w1, s1 = a.width, a.total
            dropped = w0 + 1 - w1
            if dropped > 0 and w1 > 0:
                ep.change((s0 + v - s1) / dropped, s1 / w1, t)
        elif ep.in_drift and ep.n % self.clock == 0 and a.width >= 100:
            ep.level(a.estimation)
        return self

    @property
    def estimate(self) -> float:
        """Rate over ADWIN's current window."""
        return self._adwin.estimation

    @property
    def reference(self) -> float | None:
        """Pre-change rate of the current episode."""
        return self._ep.reference

    @property
    def width(self) -> int:
        """ADWIN window length."""
        return int(self._adwin.width)


class LogScaleShift(EpisodeMixin):
    """Page-Hinkley on standardised log values (latency, cost per request).

    river's Page-Hinkley threshold is in data units, so on raw milliseconds it is either deaf or
    noisy. Here each value becomes ``z = (log(x) - mean) / std`` against a reference (the
    baseline's running statistics via :meth:`set_reference`, or this stream's first ``warmup``
    values), clipped to ``±clip``; ``delta`` (drift tolerated) and ``threshold`` (lambda) are
    therefore in reference standard deviations. Two one-sided tests (up and down) run with no
    forgetting (``alpha=1``): river's default forgetting factor lets the cumulative sum wander
    and raises false alarms on long stationary streams.

    The change size is read off the CUSUM itself: the change point is where the cumulative sum
    was at its extreme, so ``pre``/``post`` are the mean z before and after that point.

    >>> import random
    >>> rng = random.Random(3)
    >>> det = LogScaleShift(warmup=200)
    >>> for i in range(3000):
    ...     ms = rng.lognormvariate(6.0 if i < 2000 else 6.0 + math.log(1.5), 0.5)
    ...     _ = det.update(ms)
    >>> det.in_drift, det.since is not None and 2000 < det.since < 2150
    (True, True)
    """

    def __init__(
        self,
        reference: tuple[float, float] | None = None,
        warmup: int = 1000,
        delta: float = 0.25,
        threshold: float = 25.0,
        direction: Direction = "up",
        min_instances: int = 30,
        clip: float = 6.0,
        floor: float = 1e-9,
        smoothing: float = 0.02,
        settle: int = 100,
    ) -> None:
        self.warmup = warmup
        self.delta = delta
        self.threshold = threshold
        self.min_instances = min_instances
        self.clip = clip
        self.floor = floor
        self.smoothing = smoothing
        self._ep = EpisodeTracker(check_direction(direction), settle=settle)
        self._ref: tuple[float, float] | None = None
        self._w = (0, 0.0, 0.0)  # Welford (n, mean, M2) over warm-up log values
        self._level = 0.0  # EWMA of z
        self._init_ph()
        if reference is not None:
            self.set_reference(*reference)

    def _init_ph(self) -> None:
        mi, d, h = self.min_instances, self.delta, self.threshold
        self._up = rdrift.PageHinkley(min_instances=mi, delta=d, threshold=h, alpha=1.0, mode="up")
        self._down = rdrift.PageHinkley(min_instances=mi, delta=d, threshold=h, alpha=1.0, mode="down")
        # Cumulative z since the last reset, and its value at each test's extreme.
        self._cn, self._cs = 0, 0.0
        self._up_at = self._down_at = (0, 0.0)

    def set_reference(self, mean: float, std: float) -> None:
        """Use ``mean``/``std`` of log values (e.g. the baseline's) to standardise from now on."""
        self._ref = (float(mean), max(float(std), 1e-6))

    @property
    def reference(self) -> tuple[float, float] | None:
        """(mean, std) of log values used for standardising, once known."""
        return self._ref

    @property
    def estimate(self) -> float | None:
        """Smoothed current level in data units (a geometric mean), once a reference exists."""
        if self._ref is None:
            return None
        return math.exp(self._ref[0] + self._level * self._ref[1])

    @property
    def level(self) -> float:
        """Smoothed current level in reference standard deviations."""
        return self._level

    def update(self, x: float, t: float | None = None) -> LogScaleShift:
        """Add one positive value (non-positive values are floored, NaN/inf ignored)."""
        if not math.isfinite(x):
            return self
        ep = self._ep
        ep.tick(t)
        lx = math.log(max(x, self.floor))
        if self._ref is None:
            n, m, m2 = self._w
            n += 1
            d = lx - m
            m += d / n
            m2 += d * (lx - m)
            self._w = (n, m, m2)
            if n >= self.warmup:
                # One standard error up: an underestimated std inflates every z, and the CUSUM
                # false-alarm rate is exponential in threshold / std.
                sd = math.sqrt(m2 / max(n - 1, 1)) * (1.0 + 1.0 / math.sqrt(2.0 * max(n - 1, 1)))
                self.set_reference(m, sd)
            return self
        z = (lx - self._ref[0]) / self._ref[1]
        z = min(max(z, -self.clip), self.clip)
        self._level += self.smoothing * (z - self._level)
        self._cn += 1
        self._cs += z
        up, down = self._up, self._down
        up.update(z)
        down.update(z)
        if up._sum_increase <= up._min_increase:
            self._up_at = (self._cn, self._cs)
        if down._sum_decrease >= down._max_decrease:
            self._down_at = (self._cn, self._cs)
        hit = self._up_at if up.drift_detected else self._down_at if down.drift_detected else None
        if hit is not None:
            k, s = hit
            if 0 < k < self._cn:
                post = (self._cs - s) / (self._cn - k)
                ep.change(s / k, post, t)
                self._level = post  # the EWMA lags; start it at the estimated new level
            self._init_ph()  # both tests restart at the new level
        else:
            ep.level(self._level)
        return self


class DistributionShift(EpisodeMixin):
    """KSWIN on per-block summaries of output length / tokens.

    KSWIN runs a SciPy two-sample KS test per update (~0.2-0.5 ms) and at river's defaults
    raises several false alarms per 5,000 values. So ``update`` only adds the value's log to a
    running block sum; every ``block`` values the block mean is fed to KSWIN. That cuts the
    cost by ``block`` and, because a block mean has ``sqrt(block)`` times less noise, a modest
    shift becomes a large one for the KS test, so few blocks are needed. It trades away shape
    changes that leave the mean of log length unchanged. ``alpha`` is per test; with one test
    per block the false-alarm rate per value is about ``alpha / block``.

    Each test uses a fresh RNG seeded from ``(seed, test index)``, so state stays small (no
    Mersenne-Twister state in the pickle) and replays are exact.

    >>> import random
    >>> rng = random.Random(5)
    >>> det = DistributionShift()
    >>> for i in range(8000):
    ...     _ = det.update(rng.lognormvariate(5.0 if i < 5000 else 5.0 + math.log(0.7), 0.6))
    >>> det.in_drift, det.since is not None and 5000 < det.since < 5800
    (True, True)
    """

    def __init__(
        self,
        block: int = 16,
        alpha: float = 1e-5,
        window_size: int = 120,
        stat_size: int = 40,
        direction: Direction = "both",
        log: bool = True,
        seed: int = 0,
    ) -> None:
        self.block = block
        self.alpha = alpha
        self.window_size = window_size
        self.stat_size = stat_size
        self.log = log
        self.seed = seed
        self._ks = rdrift.KSWIN(alpha=alpha, window_size=window_size, stat_size=stat_size, seed=seed)
        self._ep = EpisodeTracker(check_direction(direction), settle=2)
        self._bn = 0
        self._bs = 0.0
        self._tests = 0

    def update(self, x: float, t: float | None = None) -> DistributionShift:
        """Add one value (length in chars or tokens); NaN/inf are ignored."""
        if not math.isfinite(x):
            return self
        ep = self._ep
        ep.tick(t)
        self._bs += math.log1p(max(x, 0.0)) if self.log else x
        self._bn += 1
        if self._bn >= self.block:
            self._feed(self._bs / self._bn, t)
            self._bn, self._bs = 0, 0.0
        return self

    def _feed(self, v: float, t: float | None) -> None:
        ks = self._ks
        self._tests += 1
        ks._rng = random.Random(self.seed * 1_000_003 + self._tests)
        window = ks.window  # KSWIN replaces this deque on detection; keep the old one
        ks.update(v)
        ks._rng = None
        if ks.drift_detected:
            ks._drift_detected = False  # river would reset on the next update; it already trimmed
            old = list(window)
            pre, post = _mean(old[: -self.stat_size]), _mean(old[-self.stat_size :])
            self._ep.change(pre, post, t)
        elif self._ep.in_drift and len(ks.window) >= self.stat_size:
            self._ep.level(_mean(list(ks.window)[-self.stat_size :]))

    @property
    def estimate(self) -> float | None:
        """Mean of the recent block summaries (log1p units if ``log``)."""
        w = list(self._ks.window)[-self.stat_size :]
        return _mean(w) if w else None

    @property
    def p_value(self) -> float:
        """p-value of the last KS test."""
        return float(self._ks.p_value)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0

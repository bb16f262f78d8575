"""Multivariate anomaly-rate drift: river HalfSpaceTrees over per-request numbers."""

from __future__ import annotations

import math
import random
import zlib
from array import array
from collections.abc import Mapping, Sequence
from typing import cast

from river import anomaly
from river.tree.padded import make_padded_tree
from scipy import stats

from .drift_base import EpisodeMixin, EpisodeTracker

FEATURES: tuple[str, ...] = ("latency_ms", "input_tokens", "output_tokens", "cost_usd", "output_chars")

_HIST_BINS = 200


class MultivariateAnomaly(EpisodeMixin):
    """Half-Space Trees anomaly scores turned into an anomaly-*rate* drift signal.

    Per-event anomaly alerts storm (HST flags about ``1 - quantile`` of normal traffic by
    construction), so this reports drift when the fraction of anomalous events in the last
    ``rate_window`` events is improbably high for the warm-up rate ``r0``: above the binomial
    ``1 - p_limit`` quantile. The episode ends when the window rate is back at least halfway
    to ``r0``.

    Scaling: each feature is ``log1p``-transformed and min-max scaled to [0, 1] (HST assumes
    that range) with ``bounds`` from config (data units) or, if absent, the min/max of the
    first ``bounds_warmup`` events widened by ``margin`` of the range on each side, then frozen
    and clipped so one outlier cannot squash everything else. The score threshold is
    ``score_threshold`` from config or the ``quantile`` of scores over ``calibration`` events.

    Warm-up: ``bounds_warmup`` (if bounds not given) + HST ``window_size`` + ``calibration``.

    State is kept small: the pickle stores HST node masses as an int array and rebuilds the
    tree structure from the seed (guarded by a checksum), ~2 KB instead of ~25 KB.

    >>> import random
    >>> rng = random.Random(11)
    >>> def event(bad):
    ...     lat = rng.lognormvariate(6.5, 0.3) * (20 if bad else 1)
    ...     out = 0 if bad else rng.lognormvariate(5, 0.4)
    ...     return {"latency_ms": lat, "input_tokens": rng.lognormvariate(6, 0.5),
    ...             "output_tokens": out, "cost_usd": 1e-3, "output_chars": out * 4}
    >>> det = MultivariateAnomaly(seed=1)
    >>> for i in range(6000):
    ...     _ = det.update(event(i >= 4000 and rng.random() < 0.1))
    >>> det.in_drift, det.since is not None and 4000 < det.since < 4300
    (True, True)
    """

    def __init__(
        self,
        features: Sequence[str] = FEATURES,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        score_threshold: float | None = None,
        quantile: float = 0.99,
        rate_window: int = 500,
        p_limit: float = 1e-7,
        n_trees: int = 5,
        height: int = 6,
        window_size: int = 250,
        bounds_warmup: int = 200,
        calibration: int = 1000,
        margin: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.features = tuple(features)
        self.quantile = quantile
        self.rate_window = rate_window
        self.p_limit = p_limit
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.bounds_warmup = bounds_warmup
        self.calibration = calibration
        self.margin = margin
        self.seed = seed
        self.score_threshold = score_threshold
        self._ep = EpisodeTracker("up")
        k = len(self.features)
        self._lo = array("d", [math.inf] * k)
        self._hi = array("d", [-math.inf] * k)
        self._bounds_fixed = False
        if bounds is not None:
            for i, f in enumerate(self.features):
                lo, hi = bounds[f]
                self._lo[i], self._hi[i] = math.log1p(max(lo, 0.0)), math.log1p(max(hi, 0.0))
            self._bounds_fixed = True
        self._seen = 0  # events since the HST was built
        self._hist: list[int] | None = [0] * _HIST_BINS
        self._cal_flags = 0
        self.r0: float | None = None
        self._c_hi = self._c_lo = 0
        self._ring = bytearray(rate_window)
        self._pos = 0
        self._count = 0
        self.score = 0.0
        self._hst: anomaly.HalfSpaceTrees | None = None
        if self._bounds_fixed:
            self._build()

    # -- HST construction (also used to restore from a pickle) --------------------------------

    def _build(self) -> None:
        hst = anomaly.HalfSpaceTrees(
            n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
        )
        names = [str(i) for i in range(len(self.features))]
        hst.trees = [
            make_padded_tree(
                limits={i: (0.0, 1.0) for i in sorted(names)},
                height=self.height,
                padding=0.15,
                rng=hst.rng,
                r_mass=0,
                l_mass=0,
            )
            for _ in range(self.n_trees)
        ]
        hst._tree_nodes = [list(t.iter_dfs()) for t in hst.trees]
        hst.rng = random.Random(0)  # no longer used once the trees exist
        self._hst = hst

    def _checksum(self) -> int:
        assert self._hst is not None
        parts = [
            f"{getattr(n, 'feature', '')}:{getattr(n, 'threshold', '')}"
            for nodes in self._hst._tree_nodes
            for n in nodes
        ]
        return zlib.crc32(";".join(parts).encode())

    def __getstate__(self) -> dict[str, object]:
        s = self.__dict__.copy()
        hst = s.pop("_hst")
        if hst is not None:
            masses = array("H" if self.window_size < 65535 else "l")
            for nodes in hst._tree_nodes:
                for n in nodes:
                    masses.append(n.l_mass)
                    masses.append(n.r_mass)
            s["_hst_state"] = (masses, hst.counter, hst._first_window, self._checksum())
        return s

    def __setstate__(self, s: dict[str, object]) -> None:
        hst_state = s.pop("_hst_state", None)
        self.__dict__.update(s)
        self._hst = None
        if hst_state is not None:
            masses, counter, first_window, checksum = cast(tuple[array, int, bool, int], hst_state)
            self._build()
            if self._checksum() != checksum:
                raise ValueError("HalfSpaceTrees structure differs from the pickled one (river changed?)")
            assert self._hst is not None
            it = iter(masses)
            for nodes in self._hst._tree_nodes:
                for n in nodes:
                    n.l_mass = next(it)
                    n.r_mass = next(it)
            self._hst.counter = counter
            self._hst._first_window = first_window

    # -- streaming ---------------------------------------------------------------------------

    @property
    def estimate(self) -> float:
        """Fraction of anomalous events in the recent window."""
        return self._count / self.rate_window

    @property
    def reference(self) -> float | None:
        """Warm-up anomaly rate ``r0`` (``None`` while warming up)."""
        return self.r0

    @property
    def ready(self) -> bool:
        """Warm-up finished; drift can be reported."""
        return self.r0 is not None

    def update(
        self, x: Mapping[str, float | None] | Sequence[float | None], t: float | None = None
    ) -> MultivariateAnomaly:
        """Add one event: a mapping by feature name or a sequence in ``features`` order.

        Missing (``None``) or non-finite features are allowed; HST then follows the heavier branch.
        """
        ep = self._ep
        ep.tick(t)
        raw = [x.get(f) for f in self.features] if isinstance(x, Mapping) else list(x)
        logs = [None if v is None or not math.isfinite(v) else math.log1p(max(float(v), 0.0)) for v in raw]
        if not self._bounds_fixed:
            for i, v in enumerate(logs):
                if v is not None:
                    self._lo[i] = min(self._lo[i], v)
                    self._hi[i] = max(self._hi[i], v)
            if ep.n >= self.bounds_warmup:
                for i in range(len(self.features)):
                    lo, hi = self._lo[i], self._hi[i]
                    if not math.isfinite(lo):
                        lo, hi = 0.0, 1.0
                    pad = max(self.margin * (hi - lo), 0.5)
                    self._lo[i], self._hi[i] = max(lo - pad, 0.0), hi + pad
                self._bounds_fixed = True
                self._build()
            return self
        hst = self._hst
        assert hst is not None
        feats = {}
        for i, v in enumerate(logs):
            if v is not None:
                u = (v - self._lo[i]) / (self._hi[i] - self._lo[i])
                feats[str(i)] = 0.0 if u < 0.0 else 1.0 if u > 1.0 else u
        self._seen += 1
        if self._seen <= self.window_size:
            hst.learn_one(feats)
            return self
        self.score = s = hst.score_one(feats)
        hst.learn_one(feats)
        if self.r0 is None:
            self._calibrate(s)
            return self
        flag = 1 if s >= (self.score_threshold or 0.0) else 0
        ring = self._ring
        self._count += flag - ring[self._pos]
        ring[self._pos] = flag
        self._pos = (self._pos + 1) % self.rate_window
        if not ep.in_drift:
            if self._count >= self._c_hi:
                ep.change(self.r0, self.estimate, t)
        elif self._count <= self._c_lo:
            ep.close()
        return self

    def _calibrate(self, s: float) -> None:
        hist = self._hist
        assert hist is not None
        hist[min(int(s * _HIST_BINS), _HIST_BINS - 1)] += 1
        if self.score_threshold is not None and s >= self.score_threshold:
            self._cal_flags += 1
        n = self._seen - self.window_size
        if n < self.calibration:
            return
        if self.score_threshold is None:
            target, acc, cut = self.quantile * n, 0, _HIST_BINS
            for b, c in enumerate(hist):
                acc += c
                if acc >= target:
                    cut = b + 1
                    break
            self.score_threshold = cut / _HIST_BINS
            self._cal_flags = sum(hist[cut:])
        # Laplace-smoothed rate: never zero, slightly pessimistic on short calibrations.
        r0 = (self._cal_flags + 1) / (n + 2)
        w = self.rate_window
        self.r0 = r0
        self._c_hi = int(stats.binom.isf(self.p_limit, w, r0)) + 1
        self._c_lo = int(w * r0 + 0.5 * (self._c_hi - w * r0))
        self._hist = None

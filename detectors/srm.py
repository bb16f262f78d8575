"""Sample ratio mismatch (SRM): are the arms receiving the traffic split the flag service promised?

An SRM means assignment or logging is broken (a variant crashes before logging, a cache serves one arm,
a segment is filtered), and every other comparison is then biased, so the analysis checks it first.

:func:`srm` gives an anytime-valid verdict from cumulative counts with the Dirichlet-multinomial mixture
Bayes factor of Lindon & Malek (2022), "Anytime-valid inference for multinomial count data" (NeurIPS):
under the null it is a nonnegative martingale, so checking it after every flush never inflates the
false-alarm rate above ``alpha`` (Ville's inequality). The fixed-horizon chi-square p-value is reported as
well for human-readable reports, but must not drive decisions when peeked at repeatedly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

#: Default Dirichlet concentration: prior pseudo-count total. See docs/statistics.md.
SRM_CONCENTRATION = 1000.0


@dataclass(frozen=True, slots=True)
class SRMResult:
    """Outcome of a sample-ratio-mismatch check.

    ``mismatch`` is the anytime-valid decision (``e_value >= 1/alpha``). ``p_value = min(1, 1/e_value)``
    is anytime-valid; ``chi2_p_value`` is the classic fixed-horizon Pearson test (reports only).
    """

    mismatch: bool
    e_value: float
    p_value: float
    chi2: float
    chi2_p_value: float
    n: int
    counts: tuple[int, ...]
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    alpha: float


def _normalise(weights: Sequence[float]) -> NDArray[np.float64]:
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or len(w) < 2 or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError("expected_weights must be >= 2 positive finite numbers")
    return np.asarray(w / w.sum(), dtype=float)


def srm_log_e(
    counts: ArrayLike, expected_weights: Sequence[float], *, concentration: float = SRM_CONCENTRATION
) -> NDArray[np.float64]:
    """Log Dirichlet-multinomial Bayes factor against the expected split; vectorised over leading axes.

    ``log BF = lgamma(A) - lgamma(A + n) + sum_i [lgamma(a_i + x_i) - lgamma(a_i) - x_i log p_i]`` with
    ``a_i = concentration * p_i`` and ``A = concentration``: the marginal likelihood of the counts under a
    Dirichlet prior centred on the promised split, over their likelihood under the promised split.
    """
    p = _normalise(expected_weights)
    x = np.asarray(counts, dtype=float)
    a = concentration * p
    n = x.sum(axis=-1)
    out = (
        special.gammaln(concentration)
        - special.gammaln(concentration + n)
        + np.sum(special.gammaln(a + x) - special.gammaln(a) - x * np.log(p), axis=-1)
    )
    return np.asarray(out, dtype=float)


def srm(
    counts: Sequence[int],
    expected_weights: Sequence[float],
    *,
    alpha: float = 0.001,
    concentration: float = SRM_CONCENTRATION,
) -> SRMResult:
    """Anytime-valid sample ratio mismatch test on cumulative per-arm counts.

    ``expected_weights`` are the configured traffic weights (any positive scale). Call it with the counts
    since the weights last changed: a weight change starts a new test.

    >>> srm([5000, 5000], [0.5, 0.5]).mismatch
    False
    >>> r = srm([5400, 4600], [0.5, 0.5])
    >>> r.mismatch, r.p_value < 1e-6
    (True, True)
    >>> srm([95, 5], [0.95, 0.05]).n
    100
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    x = np.asarray(counts, dtype=float)
    p = _normalise(expected_weights)
    if x.shape != p.shape or np.any(x < 0):
        raise ValueError("counts must be nonnegative and match expected_weights")
    n = int(x.sum())
    log_e = float(srm_log_e(x, expected_weights, concentration=concentration))
    e = math.exp(min(log_e, 700.0))
    if n > 0:
        chi = stats.chisquare(x, p * n)
        chi2, chi_p = float(chi.statistic), float(chi.pvalue)
        observed = tuple(float(v) for v in x / n)
    else:
        chi2, chi_p = 0.0, 1.0
        observed = tuple(math.nan for _ in x)
    return SRMResult(
        mismatch=e >= 1.0 / alpha,
        e_value=e,
        p_value=min(1.0, 1.0 / e),
        chi2=chi2,
        chi2_p_value=chi_p,
        n=n,
        counts=tuple(int(v) for v in x),
        observed=observed,
        expected=tuple(float(v) for v in p),
        alpha=alpha,
    )

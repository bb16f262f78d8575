"""Anytime-valid canary-vs-baseline tests over cumulative sufficient statistics.

The analysis step calls these after every flush with the *cumulative* counts/sums since the stage began, so
every function here is stateless: numbers in, :class:`Verdict` out, and each verdict stays valid however
often it is peeked at (a fixed-horizon z-test re-run every 250 ms would raise a false alarm in a large
fraction of identical A/A rollouts).

Methods (details, references and measured error rates in ``docs/statistics.md``):

* Rates and mean ratios: a one-sided mixture SPRT (Robbins 1970; Johari, Pekelis & Walsh 2017) with a
  half-normal mixture over the effect beyond the bound, applied to the difference estimator with its
  plug-in variance. It is an asymptotic confidence sequence in the sense of Waudby-Smith et al. (2023):
  valid as the counts grow, checked by simulation (``bench/statistics.py``).
* Quantile ratios (latency p95): exact, distribution-free confidence sequences for each arm's quantile
  from order statistics, with ranks given by a truncated beta-binomial mixture martingale (Howard &
  Ramdas 2022 style; exact by Ville's inequality), combined into a ratio bound.

Conventions: ``worse`` = the bound is violated with confidence (one-sided level ``alpha``);
``not_worse`` = the effect is shown to be on the good side of the bound (one-sided level ``alpha``, i.e.
non-inferiority established); ``lower``/``upper`` are each one-sided ``1 - alpha`` bounds, so
``[lower, upper]`` is a ``1 - 2 alpha`` two-sided confidence sequence (the TOST convention).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

Outcome = Literal["worse", "not_worse", "inconclusive", "insufficient"]

#: Mixture scale for absolute rate differences tuned for 1 percentage point (the single-scale default
#: before multi-scale mixtures; kept for compatibility and as the first of :data:`RATE_TAUS`).
RATE_TAU = 0.01
#: Default mixture scales for rate differences: a uniform average over 1, 3 and 10 percentage points, so
#: large effects on small samples are caught quickly at a cost of at most a factor 3 in evidence near 1 pp.
#: See docs/statistics.md ("Choice of the mixture scale").
RATE_TAUS: tuple[float, ...] = (0.01, 0.03, 0.1)
#: Single mixture scale for log mean ratios: 0.1 (about a 10 % relative change); the first default, kept
#: for compatibility.
LOG_RATIO_TAU = 0.1
#: Default mixture scales for log mean ratios (about 5 %, 10 % and 35 % relative changes).
LOG_RATIO_TAUS: tuple[float, ...] = (0.05, 0.1, 0.3)
#: Single mixture scale for paired mean differences, in units of the per-pair standard deviation; the
#: first default, kept for compatibility.
PAIRED_TAU_SD = 0.1
#: Default mixture scales for paired mean differences: 0.1, 0.3 and 1 per-pair standard deviations.
PAIRED_TAUS_SD: tuple[float, ...] = (0.1, 0.3, 1.0)
#: Default concentration of the beta mixture used for quantile ranks.
QUANTILE_CONCENTRATION = 100.0

_SQRT2 = math.sqrt(2.0)
_LOG2 = math.log(2.0)

#: A mixture scale: one ``tau`` or a sequence of scales averaged with equal weights.
Tau = float | Sequence[float]


def mixture_taus(tau: Tau) -> tuple[float, ...]:
    """The scales of ``tau`` as a non-empty tuple of positive floats (a float gives a 1-tuple).

    >>> mixture_taus(0.01), mixture_taus((0.01, 0.03))
    ((0.01,), (0.01, 0.03))
    """
    taus = (float(tau),) if isinstance(tau, int | float) else tuple(float(t) for t in tau)
    if not taus or not all(t > 0.0 and math.isfinite(t) for t in taus):
        raise ValueError(f"tau must be a positive float or a non-empty sequence of them, got {tau!r}")
    return taus


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of one sequential comparison of a candidate arm with the baseline.

    ``effect`` is ``candidate - baseline`` for rates and means, ``candidate / baseline`` for ratios.
    ``e_value`` is the current value of the test martingale against "within bound" (``>= 1/alpha`` means
    ``worse``) and ``p_value = min(1, 1/e_value)`` is the matching anytime-valid p-value. ``bound`` is
    the bound as configured (max increase, non-inferiority margin or max ratio).
    """

    metric: str
    outcome: Outcome
    estimate_candidate: float
    estimate_baseline: float
    effect: float
    lower: float
    upper: float
    n_candidate: int
    n_baseline: int
    e_value: float
    p_value: float
    bound: float

    @property
    def decided(self) -> bool:
        """True when the verdict is ``worse`` or ``not_worse``."""
        return self.outcome in ("worse", "not_worse")


# --------------------------------------------------------------------------------------------------
# One-sided normal-mixture boundary
# --------------------------------------------------------------------------------------------------


def _log_phi(x: float) -> float:
    """log of the standard normal CDF for x >= 0 (no underflow on that range)."""
    return math.log(0.5 * math.erfc(-x / _SQRT2))


def _single_log_e(z: float, var: float, tau: float) -> float:
    # z^2 tau^2 / (2 V (V + tau^2)) = arg^2 / 2; for arg < 0 the Gaussian factor and log Phi(arg) ~ -arg^2/2
    # cancel, so use log Phi(x) = log(erfcx(-x/sqrt2)/2) - x^2/2 (no cancellation even for V -> 0).
    s = var + tau * tau
    arg = z * tau / math.sqrt(var * s)
    head = _LOG2 + 0.5 * math.log(var / s)
    if arg >= 0:
        return head + 0.5 * arg * arg + _log_phi(arg)
    return head + math.log(0.5 * float(special.erfcx(-arg / _SQRT2)))


def _log_mean_exp(xs: Sequence[float]) -> float:
    m = max(xs)
    if not math.isfinite(m):
        return m
    return m + math.log(math.fsum(math.exp(x - m) for x in xs) / len(xs))


def mixture_log_e(z: float, var: float, tau: Tau) -> float:
    """Log of the one-sided normal-mixture likelihood ratio for an estimate ``z`` above the null value.

    The estimate is treated as N(delta, var); the null is delta <= 0 and the alternatives delta = eta with
    eta ~ half-normal(tau). Closed form of the mixture integral:
    ``2 sqrt(V/(V+tau^2)) exp(z^2 tau^2 / (2V(V+tau^2))) Phi(z tau / sqrt(V(V+tau^2)))``.
    Under the null it is (asymptotically) a nonnegative supermartingale, so by Ville's inequality it
    exceeds ``1/alpha`` at any time with probability at most ``alpha``.

    With a sequence of scales the mixing distribution is the equal-weight average of the half-normals, so
    the result is the log of the *mean* of the single-scale likelihood ratios: an average of test
    (super)martingales with fixed weights is one too, so validity is unchanged, and the mean is at least
    ``1/k`` times the best single scale.

    >>> round(math.exp(mixture_log_e(0.0, 1e-4, 0.01)), 4)   # no evidence at z=0: 2*sqrt(1/2)*1/2
    0.7071
    """
    taus = mixture_taus(tau)
    if var <= 0.0:
        return math.inf if z > 0 else 0.0
    if len(taus) == 1:
        return _single_log_e(z, var, taus[0])
    return _log_mean_exp([_single_log_e(z, var, t) for t in taus])


def _radius_bracket_sd(r: float, target: float) -> float:
    """Upper bracket (in standard errors) of the single-scale radius with ``r = tau^2/V``.

    ``Phi >= 1/2`` on ``z >= 0`` makes the log e-value at least ``-log(1+r)/2 + z^2 r / (2 (1+r))``.
    """
    return math.sqrt(2.0 * (1.0 + r) / r * (target + 0.5 * math.log1p(r))) * 1.000001


def mixture_radius(var: float, tau: Tau, alpha: float) -> float:
    """Half-width ``w`` of the one-sided (1 - alpha) mixture bound: ``estimate - w`` is a lower CS.

    Solves ``mixture_log_e(w, var, tau) = log(1/alpha)``; the same ``w`` gives the upper bound. With ``k``
    scales the mean of the e-values is at least each ``e_i / k``, so the root lies in ``[0, min_i w_i]``
    where ``w_i`` is the single-scale radius at level ``alpha / k``.

    >>> w = mixture_radius(1e-4, 0.01, 0.05)
    >>> round(w / math.sqrt(1e-4), 2)      # in standard errors; a fixed-horizon test would use 1.64
    3.26
    """
    taus = mixture_taus(tau)
    if var <= 0.0:
        return 0.0
    target = -math.log(alpha)
    sd = math.sqrt(var)
    if len(taus) == 1:
        # Phi >= 1/2 on z >= 0 gives an upper bracket; the root is positive because log e(0) < 0.
        hi = _radius_bracket_sd(taus[0] * taus[0] / var, target) * sd
    else:
        hi = min(mixture_radius(var, t, alpha / len(taus)) for t in taus) * 1.000001
    root: float = optimize.brentq(
        lambda z: mixture_log_e(z, var, taus) - target, 0.0, hi, xtol=1e-12 * max(hi, 1e-300), rtol=1e-10
    )
    return root


def _scales_array(tau: Tau | ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Scales as an array of shape ``(k, *shape)``: the leading axis of ``tau`` indexes the scales."""
    t_arr = np.asarray(tau, dtype=float)
    if t_arr.ndim == 0:
        t_arr = t_arr[None]
    k = t_arr.shape[0]
    pad = (1,) * max(0, len(shape) - (t_arr.ndim - 1))
    return np.broadcast_to(t_arr.reshape((k, *pad, *t_arr.shape[1:])), (k, *shape))


def _log_mean_exp_axis0(val: NDArray[np.float64]) -> NDArray[np.float64]:
    if val.shape[0] == 1:
        return np.asarray(val[0])
    m = val.max(axis=0)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    return np.asarray(m_safe + np.log(np.exp(val - m_safe).mean(axis=0)))


def mixture_log_e_array(z: ArrayLike, var: ArrayLike, tau: Tau | ArrayLike) -> NDArray[np.float64]:
    """Vectorised :func:`mixture_log_e` (``tau`` as in :func:`mixture_radius_array`); ``var`` must be > 0.

    Since the e-value increases in ``z``, ``worse`` (``estimate - radius > bound``) is the same event as
    ``mixture_log_e(estimate - bound) > log(1/alpha)``: one evaluation instead of a bisection, which is
    how ``bench/statistics.py`` decides.
    """
    zz, v = np.broadcast_arrays(np.asarray(z, dtype=float), np.asarray(var, dtype=float))
    t = _scales_array(tau, v.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = t * t / v
        arg = zz / np.sqrt(v) * np.sqrt(r / (1.0 + r))
        pos = np.maximum(arg, 0.0)
        # as in _single_log_e: no cancellation between the Gaussian factor and log Phi for arg < 0
        tail = np.where(arg >= 0, 0.5 * pos * pos + special.log_ndtr(pos),
                        np.log(0.5 * special.erfcx(-np.minimum(arg, 0.0) / _SQRT2)))
        val = _LOG2 - 0.5 * np.log1p(r) + tail
    return _log_mean_exp_axis0(val)


def mixture_radius_array(var: ArrayLike, tau: Tau | ArrayLike, alpha: float) -> NDArray[np.float64]:
    """Vectorised :func:`mixture_radius` (bisection on the log-mean-exp), used by ``bench/statistics.py``.

    ``tau`` is one scale or a sequence of scales (equal-weight mixture, as in :func:`mixture_radius`); an
    array's *leading* axis indexes the scales and each scale broadcasts against ``var`` (so per-element
    scales are ``tau[None, ...]``).
    """
    v = np.asarray(var, dtype=float)
    t = _scales_array(tau, v.shape)
    k = t.shape[0]
    target = -math.log(alpha)
    log_k = math.log(k)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = t * t / v
        sd = np.sqrt(v)
        lo_u = np.zeros_like(v)
        # each e_i <= k * mean, so the single-scale radius at alpha/k bounds the root from above
        hi_u = np.min(np.sqrt(2.0 * (1.0 + r) / r * (target + log_k + 0.5 * np.log1p(r))), axis=0) * 1.000001
        c = np.sqrt(r / (1.0 + r))
        base = _LOG2 - 0.5 * np.log1p(r)
        quad = r / (2.0 * (1.0 + r))
        for _ in range(60):
            mid = 0.5 * (lo_u + hi_u)
            val = _log_mean_exp_axis0(base + mid * mid * quad + special.log_ndtr(mid * c))
            above = val >= target
            hi_u = np.where(above, mid, hi_u)
            lo_u = np.where(above, lo_u, mid)
        out = hi_u * sd
    return np.where(v > 0, out, 0.0)


def _decide(
    metric: str,
    est_c: float,
    est_b: float,
    diff: float,
    var: float,
    n_c: int,
    n_b: int,
    *,
    bound: float,
    worse_if_above: bool,
    tau: Tau,
    alpha: float,
    transform: Callable[[float], float] | None = None,
    reported_bound: float | None = None,
) -> Verdict:
    """Shared decision logic for asymptotically normal differences with a one-sided mixture.

    ``bound`` is on the scale of ``diff``; ``worse_if_above`` says which side of it is bad. ``tau`` is one
    mixture scale or a sequence of them (equal-weight average of the mixtures).
    """
    w = mixture_radius(var, tau, alpha)
    lower, upper = diff - w, diff + w
    z = diff - bound if worse_if_above else bound - diff
    log_e = mixture_log_e(z, var, tau)
    e = math.exp(min(log_e, 700.0))
    if worse_if_above:
        outcome: Outcome = "worse" if lower > bound else ("not_worse" if upper < bound else "inconclusive")
    else:
        outcome = "worse" if upper < bound else ("not_worse" if lower > bound else "inconclusive")
    f = transform or (lambda x: x)
    return Verdict(
        metric=metric,
        outcome=outcome,
        estimate_candidate=est_c,
        estimate_baseline=est_b,
        effect=f(diff),
        lower=f(lower),
        upper=f(upper),
        n_candidate=n_c,
        n_baseline=n_b,
        e_value=e,
        p_value=min(1.0, 1.0 / e) if e > 0 else 1.0,
        bound=bound if reported_bound is None else reported_bound,
    )


def _insufficient(
    metric: str, est_c: float, est_b: float, effect: float, n_c: int, n_b: int, bound: float, ratio: bool
) -> Verdict:
    return Verdict(
        metric=metric,
        outcome="insufficient",
        estimate_candidate=est_c,
        estimate_baseline=est_b,
        effect=effect,
        lower=0.0 if ratio else -math.inf,
        upper=math.inf,
        n_candidate=n_c,
        n_baseline=n_b,
        e_value=1.0,
        p_value=1.0,
        bound=bound,
    )


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


# --------------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------------


def rate_variance(x_c: ArrayLike, n_c: ArrayLike, x_b: ArrayLike, n_b: ArrayLike) -> NDArray[np.float64]:
    """Plug-in variance of ``p_c - p_b`` with add-half smoothing (never 0 at zero events).

    Smoothing ``(x + 1/2) / (n + 1)`` keeps the variance positive when an arm has seen no events yet, so
    an early "0 of 150" cannot collapse the interval (vectorised; used by the tests and the bench).
    """
    xc, nc, xb, nb = (np.asarray(a, dtype=float) for a in (x_c, n_c, x_b, n_b))
    pc = (xc + 0.5) / (nc + 1.0)
    pb = (xb + 0.5) / (nb + 1.0)
    return np.asarray(pc * (1.0 - pc) / nc + pb * (1.0 - pb) / nb, dtype=float)


def _check_counts(x: int, n: int) -> None:
    if n < 0 or x < 0 or x > n:
        raise ValueError(f"need 0 <= x <= n, got x={x}, n={n}")


def rate_increase(
    x_c: int,
    n_c: int,
    x_b: int,
    n_b: int,
    *,
    max_increase: float,
    alpha: float = 0.05,
    min_n: int = 100,
    tau: Tau = RATE_TAUS,
    metric: str = "rate",
) -> Verdict:
    """Sequential test for a "higher is worse" rate (escalation, error, refusal, guard failure).

    ``worse`` when ``p_c - p_b > max_increase`` with confidence; ``not_worse`` when ``p_c - p_b <
    max_increase`` with confidence. ``x``/``n`` are cumulative event counts and trials per arm; ``tau``
    is the mixture scale (absolute effect size at which the test is most efficient) or a sequence of
    scales averaged with equal weights (default :data:`RATE_TAUS`: 1, 3 and 10 points).

    >>> v = rate_increase(300, 5000, 150, 5000, max_increase=0.0)     # 6 % vs 3 %
    >>> v.outcome, round(v.effect, 3), v.lower > 0
    ('worse', 0.03, True)
    >>> rate_increase(150, 5000, 150, 5000, max_increase=0.02).outcome  # identical, generous bound
    'not_worse'
    >>> rate_increase(1, 10, 0, 10, max_increase=0.0).outcome
    'insufficient'
    """
    return _rate_test(x_c, n_c, x_b, n_b, bound=max_increase, worse_if_above=True, reported_bound=max_increase,
                      alpha=alpha, min_n=min_n, tau=tau, metric=metric)


def _rate_test(x_c: int, n_c: int, x_b: int, n_b: int, *, bound: float, worse_if_above: bool,
               reported_bound: float, alpha: float, min_n: int, tau: Tau, metric: str) -> Verdict:
    """The difference of two rates against ``bound``, shared by both rate tests (checks, then decide)."""
    _check_alpha(alpha)
    _check_counts(x_c, n_c)
    _check_counts(x_b, n_b)
    pc = x_c / n_c if n_c else math.nan
    pb = x_b / n_b if n_b else math.nan
    if n_c < max(min_n, 1) or n_b < max(min_n, 1):
        return _insufficient(metric, pc, pb, pc - pb, n_c, n_b, reported_bound, ratio=False)
    var = float(rate_variance(x_c, n_c, x_b, n_b))
    return _decide(metric, pc, pb, pc - pb, var, n_c, n_b, bound=bound, worse_if_above=worse_if_above, tau=tau,
                   alpha=alpha, reported_bound=reported_bound)


def rate_non_inferiority(
    x_c: int,
    n_c: int,
    x_b: int,
    n_b: int,
    *,
    margin: float,
    alpha: float = 0.05,
    min_n: int = 100,
    tau: Tau = RATE_TAUS,
    metric: str = "success_rate",
) -> Verdict:
    """Sequential non-inferiority test for a "higher is better" rate (task success).

    ``worse`` when ``p_b - p_c > margin`` with confidence; ``not_worse`` when ``p_c - p_b > -margin``
    with confidence (non-inferiority established). ``effect = p_c - p_b``; ``bound`` reports ``margin``.
    ``tau`` as in :func:`rate_increase`.

    >>> rate_non_inferiority(3500, 5000, 4000, 5000, margin=0.02).outcome      # 70 % vs 80 %
    'worse'
    >>> rate_non_inferiority(4000, 5000, 4000, 5000, margin=0.05).outcome
    'not_worse'
    """
    if margin < 0:
        raise ValueError("margin must be >= 0")
    return _rate_test(x_c, n_c, x_b, n_b, bound=-margin, worse_if_above=False, reported_bound=margin,
                      alpha=alpha, min_n=min_n, tau=tau, metric=metric)


# --------------------------------------------------------------------------------------------------
# Means
# --------------------------------------------------------------------------------------------------


def mean_and_variance(total: float, total_sq: float, n: int) -> tuple[float, float]:
    """Mean and unbiased sample variance from ``(sum, sum of squares, n)`` (variance clipped at 0)."""
    if n <= 0:
        return math.nan, math.nan
    mean = total / n
    if n < 2:
        return mean, math.nan
    return mean, max(0.0, (total_sq - n * mean * mean) / (n - 1))


def mean_ratio(
    sum_c: float,
    sumsq_c: float,
    n_c: int,
    sum_b: float,
    sumsq_b: float,
    n_b: int,
    *,
    max_ratio: float,
    alpha: float = 0.05,
    min_n: int = 100,
    tau: Tau = LOG_RATIO_TAUS,
    metric: str = "mean_ratio",
) -> Verdict:
    """Sequential test of ``mean_c / mean_b <= max_ratio`` for positive metrics (cost per request).

    Works on the log ratio with the delta-method variance ``s_c^2/(n_c m_c^2) + s_b^2/(n_b m_b^2)``;
    ``effect``, ``lower``, ``upper`` are reported as ratios. ``tau`` is the mixture scale on the log scale
    (or a sequence of scales).

    >>> v = mean_ratio(1500.0, 3000.0, 1000, 1000.0, 1500.0, 1000, max_ratio=1.1)   # 1.5 vs 1.0
    >>> v.outcome, round(v.effect, 2)
    ('worse', 1.5)
    >>> mean_ratio(1000.0, 1500.0, 1000, 1000.0, 1500.0, 1000, max_ratio=1.2).outcome
    'not_worse'
    """
    _check_alpha(alpha)
    if max_ratio <= 0:
        raise ValueError("max_ratio must be > 0")
    mc, vc = mean_and_variance(sum_c, sumsq_c, n_c)
    mb, vb = mean_and_variance(sum_b, sumsq_b, n_b)
    ratio = mc / mb if (n_c > 0 and n_b > 0 and mb > 0) else math.nan
    if n_c < max(min_n, 2) or n_b < max(min_n, 2) or not (mc > 0 and mb > 0):
        return _insufficient(metric, mc, mb, ratio, n_c, n_b, max_ratio, ratio=True)
    var = vc / (n_c * mc * mc) + vb / (n_b * mb * mb)
    var = max(var, 1e-18)
    return _decide(
        metric,
        mc,
        mb,
        math.log(mc / mb),
        var,
        n_c,
        n_b,
        bound=math.log(max_ratio),
        worse_if_above=True,
        tau=tau,
        alpha=alpha,
        transform=math.exp,
        reported_bound=max_ratio,
    )


def mean_difference(
    total: float,
    total_sq: float,
    n: int,
    *,
    max_increase: float,
    alpha: float = 0.05,
    min_n: int = 30,
    tau_sd: Tau = PAIRED_TAUS_SD,
    metric: str = "paired_difference",
) -> Verdict:
    """Sequential test of a mean of paired differences (candidate - baseline) against ``max_increase``.

    For shadow pairs (same request, two variants): ``total``/``total_sq``/``n`` are the sums of the
    per-request differences. The mixture scale is ``tau_sd`` per-pair standard deviations (scale-free, so
    it suits latency in ms and cost in USD alike), or a sequence of such scales. ``estimate_candidate`` is
    the mean difference and ``estimate_baseline`` is 0.

    >>> mean_difference(2000.0, 2000.0 * 2 + 1000 * 1.0, 1000, max_increase=0.0).outcome  # mean 2, sd ~1
    'worse'
    """
    _check_alpha(alpha)
    mean, var1 = mean_and_variance(total, total_sq, n)
    if n < max(min_n, 2):
        return _insufficient(metric, mean, 0.0, mean, n, n, max_increase, ratio=False)
    sd = math.sqrt(var1)
    var = max(var1 / n, 1e-300)
    tau = tuple(t * sd for t in mixture_taus(tau_sd)) if sd > 0 else 1.0
    return _decide(
        metric, mean, 0.0, mean, var, n, n, bound=max_increase, worse_if_above=True, tau=tau, alpha=alpha
    )


# --------------------------------------------------------------------------------------------------
# Quantiles
# --------------------------------------------------------------------------------------------------


def beta_binomial_log_e(
    s: NDArray[np.float64], n: int, q: float, concentration: float, upper: bool
) -> NDArray[np.float64]:
    """log of the beta-binomial mixture martingale for ``S ~ Bin(n, q)`` at counts ``s``.

    The prior is Beta(c q, c (1-q)) truncated to ``(q, 1]`` (``upper``) or ``[0, q)``. It is an exact
    nonnegative (super)martingale under ``p <= q`` (``upper``) resp. ``p >= q``; monotone in ``s``.
    """
    a, b = concentration * q, concentration * (1.0 - q)
    a_post, b_post = a + s, b + (n - s)
    if upper:
        post = special.betaincc(a_post, b_post, q)
        prior = special.betaincc(a, b, q)
    else:
        post = special.betainc(a_post, b_post, q)
        prior = special.betainc(a, b, q)
    with np.errstate(divide="ignore"):
        return np.asarray(
            special.betaln(a_post, b_post)
            + np.log(post)
            - special.betaln(a, b)
            - math.log(prior)
            - s * math.log(q)
            - (n - s) * math.log1p(-q),
            dtype=float,
        )


class RankTable:
    """Anytime-valid rank bounds for the ``q``-quantile of one arm at sample size ``n``.

    ``lower_rank(alpha)``: the order statistic ``X_(j)`` is <= the true quantile for all n with probability
    >= 1 - alpha; ``upper_rank(alpha)``: ``X_(k) >=`` the true quantile likewise. Ranks are 1-based; 0 means
    "no bound" (-inf) and ``n + 1`` means +inf. Valid for any distribution (Ville's inequality on the
    beta-binomial mixture of the count of observations below the quantile).

    The mixture is monotone in the count, so each rank is found on a coarse grid (~32 points per standard
    deviation of the count) and refined by integer bisection: a few hundred special-function calls, even
    for a baseline with millions of requests.

    >>> t = RankTable(1000, 0.95)
    >>> t.lower_rank(0.025), t.upper_rank(0.025)        # around rank 950
    (928, 970)
    """

    __slots__ = ("_grid", "_hi_grid", "_lo_grid", "concentration", "n", "q")

    def __init__(self, n: int, q: float, concentration: float = QUANTILE_CONCENTRATION) -> None:
        self.n, self.q, self.concentration = n, q, concentration
        sd = math.sqrt(n * q * (1 - q))
        half = 12.0 * sd + 50.0
        lo, hi = max(0, int(n * q - half)), min(n, int(n * q + half) + 1)
        step = max(1, int(sd / 32.0))
        grid = np.arange(lo, hi + 1, step, dtype=float)
        if grid[-1] != hi:
            grid = np.append(grid, float(hi))
        self._grid = grid
        self._lo_grid = beta_binomial_log_e(grid, n, q, concentration, upper=False)
        self._hi_grid = beta_binomial_log_e(grid, n, q, concentration, upper=True)

    @classmethod
    def build(cls, n: int, q: float, concentration: float = QUANTILE_CONCENTRATION) -> RankTable:
        """Same as the constructor."""
        return cls(n, q, concentration)

    def _log_m(self, s: int, upper: bool) -> float:
        arr = beta_binomial_log_e(np.asarray([float(s)]), self.n, self.q, self.concentration, upper=upper)
        return float(arr[0])

    def lower_rank(self, alpha: float) -> int:
        """Smallest count ``s`` the lower-side mixture does not reject; ``X_(s) <= quantile`` (0 = none)."""
        thr = -math.log(alpha)
        ok = self._lo_grid < thr  # the mixture decreases in s: False ... False True ... True
        if ok.any():
            idx = int(np.argmax(ok))
            hi = int(self._grid[idx])
            lo = int(self._grid[idx - 1]) if idx > 0 else -1
        else:
            lo, hi = int(self._grid[-1]), self.n + 1
        # invariant: rejected at lo (or lo = -1), accepted at hi (or hi = n + 1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._log_m(mid, upper=False) < thr:
                hi = mid
            else:
                lo = mid
        return min(hi, self.n)

    def upper_rank(self, alpha: float) -> int:
        """One plus the largest count the upper-side mixture does not reject; ``X_(k) >= quantile``."""
        thr = -math.log(alpha)
        ok = self._hi_grid < thr  # the mixture increases in s: True ... True False ... False
        if ok.any():
            idx = len(ok) - 1 - int(np.argmax(ok[::-1]))
            lo = int(self._grid[idx])
            hi = int(self._grid[idx + 1]) if idx + 1 < len(ok) else self.n + 1
        else:
            lo, hi = -1, int(self._grid[0])
        # invariant: accepted at lo (or lo = -1), rejected at hi (or hi = n + 1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._log_m(mid, upper=True) < thr:
                lo = mid
            else:
                hi = mid
        return lo + 1


def rank_level(k: int, n: int) -> float:
    """Quantile level that makes a DDSketch-style ``quantile(q)`` return the ``k``-th order statistic.

    DDSketch's ``get_quantile_value(q)`` (and ``aggregates.QuantileSketch.quantile``) return the value of
    0-based rank ``floor(q (n - 1))`` (first bin whose cumulative count exceeds ``q (n - 1)``);
    ``(k - 1/2)/(n - 1)`` lands in the middle of the right rank.

    >>> view = QuantileView.of_values([5.0, 1.0, 3.0, 2.0, 4.0])
    >>> [view.quantile(rank_level(k, 5)) for k in (1, 3, 5)]
    [1.0, 3.0, 5.0]
    """
    if n <= 1:
        return 1.0
    return min(1.0, max(0.0, (k - 0.5) / (n - 1)))


class QuantileSource(Protocol):
    """What :func:`quantile_ratio` needs from an arm: a count and a DDSketch-convention ``quantile(q)``.

    ``rollguard.detectors.aggregates.QuantileSketch`` satisfies it directly; wrap a ``ddsketch.DDSketch``
    or raw values with :class:`QuantileView`.
    """

    @property
    def count(self) -> int | float: ...

    def quantile(self, q: float) -> float | None: ...


@dataclass(frozen=True, slots=True)
class QuantileView:
    """Adapter: a ``quantile(q)`` callable plus the number of values behind it.

    >>> QuantileView.of_values([3.0, 1.0, 2.0]).quantile(0.5)
    2.0
    """

    fn: Callable[[float], float | None]
    count: int

    def quantile(self, q: float) -> float | None:
        """Value at level ``q`` (DDSketch rank convention)."""
        return self.fn(q)

    @classmethod
    def of_ddsketch(cls, sketch: Any) -> QuantileView:
        """Wrap a ``ddsketch.DDSketch`` (its ``get_quantile_value`` uses the same rank convention)."""
        return cls(sketch.get_quantile_value, round(float(sketch.count)))

    @classmethod
    def of_values(cls, values: ArrayLike) -> QuantileView:
        """Exact order statistics of raw values (tests, benchmarks, replay of small files)."""
        arr = np.sort(np.asarray(values, dtype=float))
        n = len(arr)

        def quantile(q: float) -> float:
            return float(arr[min(n - 1, max(0, math.floor(q * (n - 1))))])

        return cls(quantile, n)


def order_statistic(source: QuantileSource, k: int, n: int) -> float:
    """The ``k``-th order statistic (1-based) through ``source.quantile``; +-inf outside 1..n."""
    if k <= 0:
        return -math.inf
    if k > n:
        return math.inf
    v = source.quantile(rank_level(k, n))
    return math.nan if v is None else float(v)


def quantile_bounds(
    source: QuantileSource,
    *,
    q: float = 0.95,
    alpha: float = 0.05,
    relative_accuracy: float = 0.0,
    concentration: float = QUANTILE_CONCENTRATION,
) -> tuple[float, float]:
    """One-sided (1 - alpha) anytime-valid lower and upper bounds for one arm's ``q``-quantile.

    ``relative_accuracy`` widens the bounds by the sketch's guarantee (DDSketch default 0.01).

    >>> xs = np.random.default_rng(0).exponential(1.0, 5000)   # true p95 = log(20) = 3.0
    >>> lo, hi = quantile_bounds(QuantileView.of_values(xs))
    >>> bool(lo < 3.0 < hi)
    True
    """
    n = int(source.count)
    table = RankTable.build(n, q, concentration)
    lo = order_statistic(source, table.lower_rank(alpha), n)
    hi = order_statistic(source, table.upper_rank(alpha), n)
    return lo / (1.0 + relative_accuracy), hi / (1.0 - relative_accuracy)


def quantile_ratio(
    candidate: QuantileSource,
    baseline: QuantileSource,
    *,
    max_ratio: float,
    q: float = 0.95,
    alpha: float = 0.05,
    min_n: int = 200,
    relative_accuracy: float = 0.01,
    concentration: float = QUANTILE_CONCENTRATION,
    metric: str = "quantile_ratio",
) -> Verdict:
    """Sequential test of ``Q_c(q) / Q_b(q) <= max_ratio`` for positive metrics (latency p95).

    ``candidate``/``baseline`` are cumulative mergeable sketches: anything with ``count`` and a
    DDSketch-convention ``quantile(q)`` (``aggregates.QuantileSketch`` as is; ``QuantileView.of_ddsketch``
    for a ``ddsketch.DDSketch``; ``QuantileView.of_values`` for raw values). ``relative_accuracy`` is the
    sketch's value guarantee (0.01 for both sketches; pass 0 for exact values).

    ``worse`` when the candidate quantile's lower bound exceeds ``max_ratio`` x the baseline quantile's upper
    bound; this is exactly "the candidate's fraction above ``T = max_ratio x upper(Q_b)`` significantly
    exceeds ``1 - q``" (see docs/statistics.md). ``not_worse`` when the candidate's upper bound is below
    ``max_ratio`` x the baseline's lower bound. ``alpha`` is split equally between the two arms' bounds.
    ``p_value`` is the smallest level at which the verdict would be ``worse`` (anytime-valid, ~1 % relative
    precision) and ``e_value = 1 / p_value``.

    >>> rng = np.random.default_rng(1)
    >>> base = QuantileView.of_values(rng.lognormal(6.0, 0.5, 4000))
    >>> slow = QuantileView.of_values(rng.lognormal(6.0, 0.5, 4000) * 1.6)
    >>> quantile_ratio(slow, base, max_ratio=1.2).outcome
    'worse'
    >>> quantile_ratio(base, base, max_ratio=1.2).outcome
    'not_worse'
    """
    _check_alpha(alpha)
    if max_ratio <= 0:
        raise ValueError("max_ratio must be > 0")
    n_c, n_b = int(candidate.count), int(baseline.count)
    est_c = _safe_q(candidate, q, n_c)
    est_b = _safe_q(baseline, q, n_b)
    effect = est_c / est_b if est_b > 0 else math.nan
    if n_c < max(min_n, 2) or n_b < max(min_n, 2):
        return _insufficient(metric, est_c, est_b, effect, n_c, n_b, max_ratio, ratio=True)
    tc = RankTable.build(n_c, q, concentration)
    tb = RankTable.build(n_b, q, concentration)
    eps = relative_accuracy
    cache: dict[tuple[int, int], float] = {}

    def stat(arm: int, k: int) -> float:
        key = (arm, k)
        if key not in cache:
            cache[key] = order_statistic(candidate if arm == 0 else baseline, k, n_c if arm == 0 else n_b)
        return cache[key]

    def lower_at(a: float) -> float:
        lc = stat(0, tc.lower_rank(a / 2.0)) / (1.0 + eps)
        ub = stat(1, tb.upper_rank(a / 2.0)) / (1.0 - eps)
        return max(lc, 0.0) / ub if ub > 0 else 0.0

    def upper_at(a: float) -> float:
        uc = stat(0, tc.upper_rank(a / 2.0)) / (1.0 - eps)
        lb = stat(1, tb.lower_rank(a / 2.0)) / (1.0 + eps)
        return uc / lb if lb > 0 else math.inf

    lower, upper = lower_at(alpha), upper_at(alpha)
    outcome: Outcome = "inconclusive"
    if lower > max_ratio:
        outcome = "worse"
    elif upper < max_ratio:
        outcome = "not_worse"
    p = _quantile_p_value(lambda a: lower_at(a) > max_ratio, alpha)
    return Verdict(
        metric=metric,
        outcome=outcome,
        estimate_candidate=est_c,
        estimate_baseline=est_b,
        effect=effect,
        lower=lower,
        upper=upper,
        n_candidate=n_c,
        n_baseline=n_b,
        e_value=1.0 / p,
        p_value=p,
        bound=max_ratio,
    )


def _safe_q(source: QuantileSource, q: float, n: int) -> float:
    if n <= 0:
        return math.nan
    v = source.quantile(q)
    return math.nan if v is None else float(v)


def _quantile_p_value(worse_at: Callable[[float], bool], alpha: float) -> float:
    """Smallest level at which ``worse_at`` holds (monotone in the level), by bisection on log alpha.

    Consistent with the decision: ``p <= alpha`` exactly when ``worse_at(alpha)``.
    """
    top = 1.0 - 1e-9
    if not worse_at(top):
        return 1.0
    if worse_at(1e-12):
        return 1e-12
    lo, hi = (math.log(1e-12), math.log(alpha)) if worse_at(alpha) else (math.log(alpha), math.log(top))
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        if worse_at(math.exp(mid)):
            hi = mid
        else:
            lo = mid
    return math.exp(hi)

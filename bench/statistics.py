"""Proof by simulation: rollguard's sequential tests stay valid under continuous monitoring.

Every simulated rollout is peeked at after each window (as the analysis step does after every flush) and
counts as a false alarm if *any* peek says "worse". Reported next to a naive fixed-horizon test peeked at
the same points, which is what a dashboard threshold or a re-run z-test amounts to.

    .venv/bin/python bench/statistics.py --quick     # < 1 minute
    .venv/bin/python bench/statistics.py             # a few minutes; 1000+ runs per row

Writes bench/results/statistics.json. The simulations use vectorised re-implementations of the decision
rules (same formulas, arrays over runs); ``consistency_check`` re-derives a sample of the decisions with the
library functions themselves and fails loudly if they disagree.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from rollguard.detectors.sequential import (
    LOG_RATIO_TAU,
    LOG_RATIO_TAUS,
    PAIRED_TAU_SD,
    PAIRED_TAUS_SD,
    QUANTILE_CONCENTRATION,
    RATE_TAU,
    RATE_TAUS,
    QuantileView,
    RankTable,
    Tau,
    mean_difference,
    mean_ratio,
    mixture_log_e_array,
    mixture_radius_array,
    mixture_taus,
    quantile_ratio,
    rate_increase,
    rate_variance,
)
from rollguard.detectors.srm import SRM_CONCENTRATION, srm, srm_log_e

ALPHA = 0.05
Z = float(stats.norm.ppf(1 - ALPHA))
RESULTS = Path(__file__).resolve().parent / "results" / "statistics.json"
Array = NDArray[np.float64]


def ci95(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95 % interval for a simulated rate."""
    r = stats.binomtest(k, n).proportion_ci(0.95)
    return float(r.low), float(r.high)


def first_true(mask: NDArray[np.bool_], n_at: NDArray[np.int64]) -> Array:
    """Per run, the sample size at the first True (inf if never)."""
    hit = mask.any(axis=1)
    idx = mask.argmax(axis=1)
    return np.where(hit, n_at[idx].astype(float), np.inf)


def summarise_times(t: Array) -> dict[str, Any]:
    """Median and p90 of detection times, with censoring shown as None (not detected by the horizon)."""
    det = float(np.isfinite(t).mean())
    med = float(np.quantile(t, 0.5)) if det >= 0.5 else math.inf
    p90 = float(np.quantile(t, 0.9)) if det >= 0.9 else math.inf
    return {"detected": det, "median": med, "p90": p90}


def fmt_n(x: float, horizon: int) -> str:
    return f">{horizon}" if not math.isfinite(x) else f"{int(x)}"


def tau_label(tau: Tau) -> str:
    """``0.01`` or ``(0.01,0.03,0.1)``: the key used in the JSON and the table headers."""
    taus = mixture_taus(tau)
    return f"{taus[0]:g}" if len(taus) == 1 else "(" + ",".join(f"{t:g}" for t in taus) + ")"


# --------------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------------


def simulate_rates(
    rng: np.random.Generator, runs: int, p_c: float, p_b: float, win_c: int, win_b: int, windows: int
) -> tuple[Array, Array, Array, Array]:
    """Cumulative events per arm at each peek: arrays (runs, windows)."""
    x_c = np.cumsum(rng.binomial(win_c, p_c, size=(runs, windows)), axis=1).astype(float)
    x_b = np.cumsum(rng.binomial(win_b, p_b, size=(runs, windows)), axis=1).astype(float)
    n_c = np.broadcast_to(win_c * np.arange(1, windows + 1, dtype=float), x_c.shape)
    n_b = np.broadcast_to(win_b * np.arange(1, windows + 1, dtype=float), x_b.shape)
    return x_c, n_c, x_b, n_b


def rate_decisions(
    x_c: Array, n_c: Array, x_b: Array, n_b: Array, *, bound: float, tau: Tau = RATE_TAUS, min_n: int = 100,
    alpha: float = ALPHA,
) -> dict[str, NDArray[np.bool_]]:
    """Vectorised ``rate_increase`` (worse / not_worse) and the naive peeked one-sided z-test.

    ``d - w > bound`` (the library's rule, ``w`` the radius) is the same event as ``E(d - bound) > 1/alpha``
    because the e-value increases in its argument, so one e-value evaluation replaces the radius bisection.
    """
    pc, pb = x_c / n_c, x_b / n_b
    d = pc - pb
    v = rate_variance(x_c, n_c, x_b, n_b)
    target = -math.log(alpha)
    enough = (n_c >= min_n) & (n_b >= min_n)
    pooled = (x_c + x_b) / (n_c + n_b)
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * (1 / n_c + 1 / n_b), 1e-300))
    return {
        "worse": enough & (mixture_log_e_array(d - bound, v, tau) > target),
        "not_worse": enough & (mixture_log_e_array(bound - d, v, tau) > target),
        "naive": (d - bound) / se > Z,
    }


def rates_aa(rng: np.random.Generator, runs: int, quick: bool) -> list[dict[str, Any]]:
    """A/A (truth on the bound) for the shipped multi-scale mixture and the single tau = 0.01 it replaced."""
    rows = []
    cases = [
        ("escalation 3% vs 3%, 1:1, max_increase=0", 0.03, 0.03, 200, 200, 0.0, "worse"),
        ("escalation 3% vs 3%, 1:19 (5% canary), max_increase=0", 0.03, 0.03, 50, 950, 0.0, "worse"),
        ("error 0.5% vs 0.5%, 1:1, max_increase=0", 0.005, 0.005, 200, 200, 0.0, "worse"),
        ("escalation 3% vs 3%, low traffic 1:3 (10 vs 30 per peek, to 1k/3k), max_increase=0", 0.03, 0.03,
         10, 30, 0.0, "worse"),
        ("escalation 4% vs 3% (on the bound), max_increase=0.01: false not_worse", 0.04, 0.03, 200, 200,
         0.01, "not_worse"),
    ]
    if quick:
        cases = cases[:2] + cases[3:]
    for name, p_c, p_b, wc, wb, bound, kind in cases:
        windows = 100
        x_c, n_c, x_b, n_b = simulate_rates(rng, runs, p_c, p_b, wc, wb, windows)
        dec = rate_decisions(x_c, n_c, x_b, n_b, bound=bound)
        single_tau = rate_decisions(x_c, n_c, x_b, n_b, bound=bound, tau=RATE_TAU)
        ours = int(dec[kind].any(axis=1).sum())
        one = int(single_tau[kind].any(axis=1).sum())
        naive = int(dec["naive"].any(axis=1).sum()) if kind == "worse" else None
        single = int(dec["naive"][:, -1].sum()) if kind == "worse" else None
        rows.append({
            "case": name, "runs": runs, "peeks": windows, "horizon_per_arm": [wc * windows, wb * windows],
            "error": kind, "tau": tau_label(RATE_TAUS), "sequential_rate": ours / runs,
            "sequential_ci95": ci95(ours, runs),
            "single_tau": tau_label(RATE_TAU), "single_tau_rate": one / runs, "single_tau_ci95": ci95(one, runs),
            "naive_peeking_rate": None if naive is None else naive / runs,
            "fixed_horizon_single_look_rate": None if single is None else single / runs,
        })
    return rows


def fixed_horizon_n(p_c: float, p_b: float, power: float = 0.8) -> int:
    """Per-arm n a one-sided fixed-horizon z-test needs for the given power at level ALPHA."""
    zb = float(stats.norm.ppf(power))
    return math.ceil((Z + zb) ** 2 * (p_c * (1 - p_c) + p_b * (1 - p_b)) / (p_c - p_b) ** 2)


def rates_power(rng: np.random.Generator, runs: int, quick: bool) -> dict[str, Any]:
    win, windows = 200, 300  # horizon 60k per arm
    horizon = win * windows
    n_at = win * np.arange(1, windows + 1)
    rows = []
    taus: list[Tau] = [RATE_TAUS, RATE_TAU] if quick else [RATE_TAUS, RATE_TAU, 0.005, 0.02, 0.03]
    for rise in (0.01, 0.02, 0.05):
        x_c, n_c, x_b, n_b = simulate_rates(rng, runs, 0.03 + rise, 0.03, win, win, windows)
        row: dict[str, Any] = {"rise_pp": rise * 100, "runs": runs, "horizon_per_arm": horizon}
        for tau in taus:
            dec = rate_decisions(x_c, n_c, x_b, n_b, bound=0.0, tau=tau)
            row[f"sequential_tau={tau_label(tau)}"] = summarise_times(first_true(dec["worse"], n_at))
        dec = rate_decisions(x_c, n_c, x_b, n_b, bound=0.0)
        row["naive_peeking_invalid"] = summarise_times(first_true(dec["naive"], n_at))
        nf = fixed_horizon_n(0.03 + rise, 0.03)
        row["fixed_horizon_n_80pct_power"] = nf
        k = min(windows - 1, max(0, math.ceil(nf / win) - 1))
        row["fixed_horizon_power_sim"] = float(dec["naive"][:, k].mean())
        row["sequential_detected_by_fixed_n"] = float(dec["worse"][:, : k + 1].any(axis=1).mean())
        rows.append(row)
    return {"baseline_rate": 0.03, "max_increase": 0.0, "alpha": ALPHA, "window_per_arm": win, "rows": rows,
            "taus": [tau_label(t) for t in taus], "default": tau_label(RATE_TAUS)}


#: The scenario bench's low-traffic segment: 93/293 canary vs 30/931 baseline escalations, bound 1 point,
#: alpha Bonferroni-corrected over ~47 (segment view, criterion) tests.
SMALL_SEGMENT = (93, 293, 30, 931)
SMALL_ALPHA = ALPHA / 47


def rates_small_sample(rng: np.random.Generator, runs: int, quick: bool) -> dict[str, Any]:
    """Large effects on small samples: the scenario-bench segment, and a simulated 10-point rise."""
    x_c, n_c, x_b, n_b = SMALL_SEGMENT
    case: dict[str, Any] = {"counts": list(SMALL_SEGMENT), "max_increase": 0.01, "alpha": SMALL_ALPHA,
                            "needed_e": 1 / SMALL_ALPHA}
    for tau in (RATE_TAUS, RATE_TAU, 0.03, 0.1):
        v = rate_increase(x_c, n_c, x_b, n_b, max_increase=0.01, alpha=SMALL_ALPHA, tau=tau)
        case[tau_label(tau)] = {"e_value": v.e_value, "outcome": v.outcome, "lower": v.lower}
    # simulated: 3 % -> 13 %, canary:baseline 1:3, peek every 10 canary / 30 baseline up to 300 / 900
    wc, wb, windows = 10, 30, 30
    sims = []
    for p_c, bound in ((0.13, 0.01), (0.08, 0.01)):
        xc, nc, xb, nb = simulate_rates(rng, runs, p_c, 0.03, wc, wb, windows)
        row: dict[str, Any] = {"case": f"3% -> {100 * p_c:.0f}%, max_increase={bound}, 1:3, peek every "
                               f"{wc}/{wb}, to {wc * windows}/{wb * windows}", "runs": runs}
        for tau in (RATE_TAUS, RATE_TAU):
            dec = rate_decisions(xc, nc, xb, nb, bound=bound, tau=tau, alpha=SMALL_ALPHA)
            row[f"tau={tau_label(tau)}"] = summarise_times(first_true(dec["worse"], wc * np.arange(1, windows + 1)))
        sims.append(row)
    return {"segment": case, "simulated": sims, "window": [wc, wb]}


# --------------------------------------------------------------------------------------------------
# Mean ratio (cost per request)
# --------------------------------------------------------------------------------------------------


def cost_moments(
    rng: np.random.Generator, runs: int, win: int, windows: int, sigma: float, scale_c: float
) -> tuple[Array, Array, Array]:
    """Cumulative (sum, sum of squares) per arm (axis 0: candidate, baseline) and n at each peek."""
    sums = np.zeros((2, runs, windows))
    sqs = np.zeros((2, runs, windows))
    for arm, scale in enumerate((scale_c, 1.0)):
        for k in range(windows):
            x = rng.lognormal(math.log(0.002), sigma, size=(runs, win)) * scale
            sums[arm, :, k] = x.sum(axis=1)
            sqs[arm, :, k] = np.einsum("ij,ij->i", x, x)
    return np.cumsum(sums, axis=2), np.cumsum(sqs, axis=2), win * np.arange(1, windows + 1, dtype=float)


def mean_ratio_decisions(s: Array, ss: Array, n: Array, *, max_ratio: float, tau: Tau) -> dict[str, Any]:
    """Vectorised ``mean_ratio`` (worse) and the naive peeked z-test on the log ratio."""
    m = s / n
    var = np.maximum((ss - n * m * m) / (n - 1), 0.0)
    v = var[0] / (n * m[0] ** 2) + var[1] / (n * m[1] ** 2)
    d = np.log(m[0] / m[1]) - math.log(max_ratio)
    worse = mixture_log_e_array(d, np.maximum(v, 1e-18), tau) > -math.log(ALPHA)
    return {"worse": worse & (n >= 100), "naive": d / np.sqrt(v) > Z}


def mean_ratio_aa(rng: np.random.Generator, runs: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    win, windows = 200, 100
    for sigma in (0.5, 1.0) if not quick else (1.0,):
        s, ss, n = cost_moments(rng, runs, win, windows, sigma, 1.0)
        dec = mean_ratio_decisions(s, ss, n, max_ratio=1.0, tau=LOG_RATIO_TAUS)
        alt = mean_ratio_decisions(s, ss, n, max_ratio=1.0, tau=LOG_RATIO_TAU)
        ours = int(dec["worse"].any(axis=1).sum())
        other = int(alt["worse"].any(axis=1).sum())
        rows.append({
            "case": f"cost lognormal(sigma={sigma}) A/A, max_ratio=1.0 (truth on the bound)",
            "runs": runs, "peeks": windows, "horizon_per_arm": win * windows,
            "tau": tau_label(LOG_RATIO_TAUS), "sequential_rate": ours / runs,
            "sequential_ci95": ci95(ours, runs),
            "single_tau": tau_label(LOG_RATIO_TAU), "single_tau_rate": other / runs,
            "single_tau_ci95": ci95(other, runs),
            "naive_peeking_rate": float(dec["naive"].any(axis=1).mean()),
            "fixed_horizon_single_look_rate": float(dec["naive"][:, -1].mean()),
        })
    return rows


def mean_ratio_power(rng: np.random.Generator, runs: int, quick: bool) -> dict[str, Any]:
    """Requests per arm to ``worse``: cost x ratio vs max_ratio 1.0, lognormal sigma 1, peek every 50."""
    win, windows = 50, 200 if quick else 400
    runs = min(runs, 1000 if quick else 2000)
    n_at = win * np.arange(1, windows + 1)
    taus: list[Tau] = [LOG_RATIO_TAUS, LOG_RATIO_TAU]
    rows = []
    for ratio in (1.1, 1.25, 1.5, 2.0):
        s, ss, n = cost_moments(rng, runs, win, windows, 1.0, ratio)
        row: dict[str, Any] = {"ratio": ratio, "runs": runs, "horizon_per_arm": win * windows}
        for tau in taus:
            dec = mean_ratio_decisions(s, ss, n, max_ratio=1.0, tau=tau)
            row[f"sequential_tau={tau_label(tau)}"] = summarise_times(first_true(dec["worse"], n_at))
        rows.append(row)
    return {"sigma": 1.0, "max_ratio": 1.0, "window_per_arm": win, "rows": rows,
            "taus": [tau_label(t) for t in taus]}


# --------------------------------------------------------------------------------------------------
# Paired mean differences (shadow deltas, disagreement)
# --------------------------------------------------------------------------------------------------


def paired_moments(
    rng: np.random.Generator, runs: int, win: int, windows: int, kind: str, shift: float
) -> tuple[Array, Array, Array]:
    """Cumulative (sum, sum of squares) of per-pair differences and n at each peek."""
    sums = np.zeros((runs, windows))
    sqs = np.zeros((runs, windows))
    for k in range(windows):
        if kind == "normal":
            x = rng.normal(shift, 1.0, size=(runs, win))
        elif kind == "t3":
            x = rng.standard_t(3, size=(runs, win)) / math.sqrt(3.0) + shift  # unit variance
        else:  # "bernoulli": disagreement indicator with probability shift
            x = (rng.random((runs, win)) < shift).astype(float)
        sums[:, k] = x.sum(axis=1)
        sqs[:, k] = np.einsum("ij,ij->i", x, x)
    return np.cumsum(sums, axis=1), np.cumsum(sqs, axis=1), win * np.arange(1, windows + 1, dtype=float)


def paired_worse(s: Array, ss: Array, n: Array, *, bound: float, tau_sd: Tau, min_n: int = 30) -> Array:
    """Vectorised ``mean_difference`` worse decisions (per-element scales ``tau_sd x sd``)."""
    m = s / n
    var1 = np.maximum((ss - n * m * m) / (n - 1), 0.0)
    sd = np.sqrt(var1)
    taus = np.asarray(mixture_taus(tau_sd))[:, None, None]
    tau = np.where(sd > 0, taus * sd, 1.0)
    log_e = mixture_log_e_array(m - bound, np.maximum(var1 / n, 1e-300), tau)
    return np.asarray((log_e > -math.log(ALPHA)) & (n >= min_n))


def paired_checks(rng: np.random.Generator, runs: int, quick: bool) -> dict[str, Any]:
    """A/A on the bound and power: shipped ``PAIRED_TAUS_SD`` next to the single ``PAIRED_TAU_SD``."""
    win, windows = 25, 400
    runs = min(runs, 1000 if quick else 2000)
    taus: list[Tau] = [PAIRED_TAUS_SD, PAIRED_TAU_SD]
    n_at = win * np.arange(1, windows + 1)
    aa = []
    for name, kind, shift, bound in (
        ("normal deltas, mean 0, max_increase=0", "normal", 0.0, 0.0),
        ("t3 deltas (heavy tails), mean 0, max_increase=0", "t3", 0.0, 0.0),
        ("disagreement 5%, max_increase=0.05 (on the bound)", "bernoulli", 0.05, 0.05),
    ):
        s, ss, n = paired_moments(rng, runs, win, windows, kind, shift)
        row: dict[str, Any] = {"case": name, "runs": runs, "peeks": windows, "horizon": win * windows}
        for tau in taus:
            k = int(paired_worse(s, ss, n, bound=bound, tau_sd=tau).any(axis=1).sum())
            row[f"tau_sd={tau_label(tau)}"] = {"rate": k / runs, "ci95": ci95(k, runs)}
        aa.append(row)
    power = []
    for name, kind, shift, bound in (
        ("normal deltas +0.1 sd", "normal", 0.1, 0.0),
        ("normal deltas +0.25 sd", "normal", 0.25, 0.0),
        ("normal deltas +0.5 sd", "normal", 0.5, 0.0),
        ("disagreement 15% vs max_increase=0.05", "bernoulli", 0.15, 0.05),
    ):
        s, ss, n = paired_moments(rng, runs, win, windows, kind, shift)
        row = {"case": name, "runs": runs, "horizon": win * windows}
        for tau in taus:
            row[f"tau_sd={tau_label(tau)}"] = summarise_times(
                first_true(paired_worse(s, ss, n, bound=bound, tau_sd=tau), n_at))
        power.append(row)
    return {"aa": aa, "power": power, "taus": [tau_label(t) for t in taus], "window": win}


# --------------------------------------------------------------------------------------------------
# Quantile ratio (latency p95)
# --------------------------------------------------------------------------------------------------


def quantile_runs(
    rng: np.random.Generator, runs: int, step: int, horizon: int, scale_c: float, max_ratio: float
) -> dict[str, Any]:
    """Exact order statistics of lognormal latencies; returns per-run first detection and naive alarms."""
    q = 0.95
    xc = rng.lognormal(6.0, 0.6, size=(runs, horizon)) * scale_c
    xb = rng.lognormal(6.0, 0.6, size=(runs, horizon))
    n_at = np.arange(step, horizon + 1, step)
    worse = np.zeros((runs, len(n_at)), dtype=bool)
    naive = np.zeros((runs, len(n_at)), dtype=bool)
    for i, n in enumerate(n_at):
        t = RankTable(int(n), q, QUANTILE_CONCENTRATION)
        j, k = t.lower_rank(ALPHA / 2), t.upper_rank(ALPHA / 2)
        est = math.floor(q * (n - 1))  # DDSketch rank convention, 0-based
        kth = sorted({max(j - 1, 0), min(k - 1, n - 1), est})
        pc = np.partition(xc[:, :n], kth, axis=1)
        pb = np.partition(xb[:, :n], kth, axis=1)
        lc = pc[:, j - 1] if j >= 1 else np.zeros(runs)
        ub = pb[:, k - 1] if k <= n else np.full(runs, np.inf)
        worse[:, i] = lc > max_ratio * ub
        # naive: candidate exceedance of the baseline's point p95, one-sample z-test vs 5 %, peeked
        thr = max_ratio * pb[:, est]
        frac = (xc[:, :n] > thr[:, None]).mean(axis=1)
        naive[:, i] = (frac - (1 - q)) / math.sqrt(q * (1 - q) / n) > Z
    return {"worse": worse, "naive": naive, "n_at": n_at}


def quantile_aa(rng: np.random.Generator, runs: int, quick: bool) -> dict[str, Any]:
    step, horizon = (1000, 10000) if quick else (500, 20000)
    r = quantile_runs(rng, runs, step, horizon, 1.0, 1.0)
    ours = int(r["worse"].any(axis=1).sum())
    aa = {
        "case": "latency lognormal A/A, p95, max_ratio=1.0 (truth on the bound)", "runs": runs,
        "peeks": len(r["n_at"]), "horizon_per_arm": horizon, "sequential_rate": ours / runs,
        "sequential_ci95": ci95(ours, runs), "naive_peeking_rate": float(r["naive"].any(axis=1).mean()),
        "fixed_horizon_single_look_rate": float(r["naive"][:, -1].mean()),
    }
    pw = quantile_runs(rng, min(runs, 300), step, horizon, 1.5, 1.2)
    power = {
        "case": "latency x1.5 vs max_ratio=1.2", "runs": min(runs, 300), "horizon_per_arm": horizon,
        "sequential": summarise_times(first_true(pw["worse"], pw["n_at"])),
    }
    return {"aa": aa, "power": power}


# --------------------------------------------------------------------------------------------------
# SRM
# --------------------------------------------------------------------------------------------------


def srm_sim(
    rng: np.random.Generator, runs: int, weights: list[float], true_w: list[float], per_window: int,
    windows: int, alpha: float,
) -> dict[str, Any]:
    counts = np.cumsum(rng.multinomial(per_window, true_w, size=(runs, windows)), axis=1).astype(float)
    log_e = srm_log_e(counts, weights, concentration=SRM_CONCENTRATION)
    worse = log_e >= -math.log(alpha)
    p = np.asarray(weights) / sum(weights)
    n = counts.sum(axis=2, keepdims=True)
    chi2 = (((counts - n * p) ** 2) / (n * p)).sum(axis=2)
    naive = stats.chi2.sf(chi2, len(weights) - 1) < alpha
    n_at = per_window * np.arange(1, windows + 1)
    return {"worse": worse, "naive": naive, "n_at": n_at}


def srm_checks(rng: np.random.Generator, runs: int, quick: bool) -> dict[str, Any]:
    rows = []
    per_window, windows = 400, 100
    for weights in ([0.5, 0.5], [0.95, 0.05]):
        for alpha in (0.05, 0.001):
            r = srm_sim(rng, runs, weights, weights, per_window, windows, alpha)
            ours = int(r["worse"].any(axis=1).sum())
            rows.append({
                "case": f"SRM A/A weights={weights}", "alpha": alpha, "runs": runs, "peeks": windows,
                "horizon_total": per_window * windows, "sequential_rate": ours / runs,
                "sequential_ci95": ci95(ours, runs),
                "naive_peeking_rate": float(r["naive"].any(axis=1).mean()),
            })
    power = []
    for true_w in ([0.955, 0.045], [0.96, 0.04]):
        r = srm_sim(rng, runs, [0.95, 0.05], true_w, per_window, 250, 0.001)
        power.append({"case": f"expected [0.95, 0.05], actual {true_w}", "alpha": 0.001,
                      "horizon_total": per_window * 250,
                      "sequential": summarise_times(first_true(r["worse"], r["n_at"]))})
    return {"aa": rows, "power": power}


# --------------------------------------------------------------------------------------------------
# Consistency with the library functions
# --------------------------------------------------------------------------------------------------


def consistency_check(rng: np.random.Generator, samples: int = 200) -> dict[str, int]:
    """Re-run a sample of simulated states through the real library functions; decisions must match."""
    mismatches = checked = 0
    x_c, n_c, x_b, n_b = simulate_rates(rng, samples, 0.05, 0.03, 200, 200, 50)
    dec = rate_decisions(x_c, n_c, x_b, n_b, bound=0.0)  # the library default (multi-scale)
    dec1 = rate_decisions(x_c, n_c, x_b, n_b, bound=0.0, tau=RATE_TAU)
    for i in range(samples):
        k = int(rng.integers(0, 50))
        args = (int(x_c[i, k]), int(n_c[i, k]), int(x_b[i, k]), int(n_b[i, k]))
        for d, v in ((dec, rate_increase(*args, max_increase=0.0)),
                     (dec1, rate_increase(*args, max_increase=0.0, tau=RATE_TAU))):
            want = "worse" if d["worse"][i, k] else ("not_worse" if d["not_worse"][i, k] else "inconclusive")
            mismatches += v.outcome != want
            checked += 1
    s, ss, n = paired_moments(rng, 20, 25, 40, "normal", 0.1)
    for tau in (PAIRED_TAUS_SD, PAIRED_TAU_SD):
        pw = paired_worse(s, ss, n, bound=0.0, tau_sd=tau)
        for i in range(20):
            k = int(rng.integers(0, 40))
            vd = mean_difference(float(s[i, k]), float(ss[i, k]), int(n[k]), max_increase=0.0, tau_sd=tau)
            mismatches += (vd.outcome == "worse") != bool(pw[i, k])
            checked += 1
    for _ in range(20):
        n = int(rng.integers(300, 3000))
        xc = rng.lognormal(6.0, 0.6, n) * 1.25
        xb = rng.lognormal(6.0, 0.6, n)
        t = RankTable(n, 0.95)
        j, k = t.lower_rank(ALPHA / 2), t.upper_rank(ALPHA / 2)
        lc, ub = np.sort(xc)[j - 1], np.sort(xb)[k - 1] if k <= n else np.inf
        v = quantile_ratio(QuantileView.of_values(xc), QuantileView.of_values(xb), max_ratio=1.0,
                           relative_accuracy=0.0)
        mismatches += (v.outcome == "worse") != bool(lc > ub)
        s1, s2 = xc.sum(), xb.sum()
        m1, m2 = s1 / n, s2 / n
        var = np.var(xc, ddof=1) / (n * m1 * m1) + np.var(xb, ddof=1) / (n * m2 * m2)
        for tau in (LOG_RATIO_TAUS, LOG_RATIO_TAU):
            vm = mean_ratio(s1, float(xc @ xc), n, s2, float(xb @ xb), n, max_ratio=1.0, tau=tau)
            wv = float(mixture_radius_array(np.asarray([var]), tau, ALPHA)[0])
            mismatches += (vm.outcome == "worse") != bool(math.log(m1 / m2) - wv > 0)
        checked += 3
    c = rng.multinomial(4000, [0.95, 0.05], size=20)
    for row in c:
        r = srm(list(row), [0.95, 0.05], alpha=0.05)
        mismatches += r.mismatch != bool(srm_log_e(row, [0.95, 0.05]) >= -math.log(0.05))
        checked += 1
    return {"checked": checked, "mismatches": mismatches}


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def print_tables(res: dict[str, Any]) -> None:
    print(f"\nA/A false-alarm rate, peeked after every window (alpha = {ALPHA} one-sided unless noted)")
    print(f"{'case':<86} {'runs':>5} {'peeks':>5} {'default':>10} {'95% CI':>13} {'single tau':>10} "
          f"{'95% CI':>13} {'naive peek':>10} {'1 look':>7}")

    def ci(c: list[float]) -> str:
        return f"[{100 * c[0]:.1f},{100 * c[1]:.1f}]"

    for r in res["rates_aa"]:
        print(f"{r['case'] + ' tau=' + r['tau']:<86} {r['runs']:>5} {r['peeks']:>5} "
              f"{pct(r['sequential_rate']):>10} {ci(r['sequential_ci95']):>13} {pct(r['single_tau_rate']):>10} "
              f"{ci(r['single_tau_ci95']):>13} {pct(r.get('naive_peeking_rate')):>10} "
              f"{pct(r.get('fixed_horizon_single_look_rate')):>7}")
    for r in res["mean_ratio_aa"]:
        print(f"{r['case'] + ' tau=' + r['tau']:<86} {r['runs']:>5} "
              f"{r['peeks']:>5} {pct(r['sequential_rate']):>10} {ci(r['sequential_ci95']):>13} "
              f"{pct(r['single_tau_rate']):>10} {ci(r['single_tau_ci95']):>13} "
              f"{pct(r['naive_peeking_rate']):>10} {pct(r['fixed_horizon_single_look_rate']):>7}")
    r = res["quantile"]["aa"]
    print(f"{r['case']:<86} {r['runs']:>5} {r['peeks']:>5} {pct(r['sequential_rate']):>10} "
          f"{ci(r['sequential_ci95']):>13} {'-':>10} {'-':>13} {pct(r['naive_peeking_rate']):>10} "
          f"{pct(r['fixed_horizon_single_look_rate']):>7}")
    for r in res["srm"]["aa"]:
        name = f"{r['case']} alpha={r['alpha']}"
        print(f"{name:<86} {r['runs']:>5} {r['peeks']:>5} {pct(r['sequential_rate']):>10} "
              f"{ci(r['sequential_ci95']):>13} {'-':>10} {'-':>13} {pct(r['naive_peeking_rate']):>10} {'-':>7}")
    pa = res["paired"]
    print(f"\nPaired mean_difference A/A (peek every {pa['window']} pairs); tau_sd = " + " | ".join(pa["taus"]))
    for r in pa["aa"]:
        cells = " ".join(f"{pct(r['tau_sd=' + t]['rate']):>8} {ci(r['tau_sd=' + t]['ci95']):>13}"
                         for t in pa["taus"])
        print(f"{r['case']:<60} {r['runs']:>5} {r['peeks']:>5} {cells}")

    pw = res["rates_power"]
    h = pw["rows"][0]["horizon_per_arm"]
    print(f"\nPower: events per arm to a 'worse' verdict, escalation 3% -> 3%+rise, max_increase=0, "
          f"alpha={ALPHA}, peek every {pw['window_per_arm']}/arm, horizon {h}/arm (default tau={pw['default']})")
    head = f"{'rise':>5} " + " ".join(f"{'tau=' + t + ' med/p90':>26}" for t in pw["taus"])
    print(head + f" {'naive peek med (invalid)':>25} {'fixed-horizon n (80%)':>22} {'seq by fixed n':>15}")
    for r in pw["rows"]:
        cells = []
        for t in pw["taus"]:
            s = r[f"sequential_tau={t}"]
            cells.append(f"{fmt_n(s['median'], h) + ' / ' + fmt_n(s['p90'], h):>26}")
        nv = r["naive_peeking_invalid"]
        print(f"{r['rise_pp']:>4.0f}pp " + " ".join(cells) + f" {fmt_n(nv['median'], h):>25} "
              f"{r['fixed_horizon_n_80pct_power']:>22} {pct(r['sequential_detected_by_fixed_n']):>15}")

    sm = res["rates_small"]
    seg = sm["segment"]
    print(f"\nSmall segment {seg['counts']} (x_c, n_c, x_b, n_b), max_increase={seg['max_increase']}, "
          f"alpha={seg['alpha']:.2e} (needs e >= {seg['needed_e']:.0f}):")
    for key, val in seg.items():
        if isinstance(val, dict):
            print(f"  tau={key:<16} e={val['e_value']:.3g} {val['outcome']:<12} lower={val['lower']:.4f}")
    for r in sm["simulated"]:
        cells = []
        for key, val in r.items():
            if key.startswith("tau="):
                cells.append(f"{key}: detected {pct(val['detected'])} med {fmt_n(val['median'], 300)} "
                             f"p90 {fmt_n(val['p90'], 300)}")
        print(f"  {r['case']} ({r['runs']} runs, canary events): " + "; ".join(cells))

    mp = res["mean_ratio_power"]
    hm = mp["rows"][0]["horizon_per_arm"]
    print(f"\nCost power: requests per arm to 'worse', lognormal sigma={mp['sigma']}, max_ratio={mp['max_ratio']}, "
          f"peek every {mp['window_per_arm']}/arm")
    for r in mp["rows"]:
        cells = []
        for t in mp["taus"]:
            s = r[f"sequential_tau={t}"]
            cells.append(f"tau={t}: {fmt_n(s['median'], hm)} / {fmt_n(s['p90'], hm)}")
        print(f"  x{r['ratio']:<5} " + "   ".join(cells))
    print(f"Paired power: pairs to 'worse' (median / p90), peek every {pa['window']}")
    for r in pa["power"]:
        cells = []
        for t in pa["taus"]:
            s = r[f"tau_sd={t}"]
            cells.append(f"tau_sd={t}: {fmt_n(s['median'], r['horizon'])} / {fmt_n(s['p90'], r['horizon'])}")
        print(f"  {r['case']:<40} " + "   ".join(cells))

    q = res["quantile"]["power"]
    s = q["sequential"]
    hq = q["horizon_per_arm"]
    print(f"\nLatency power ({q['case']}, {q['runs']} runs): median {fmt_n(s['median'], hq)}"
          f", p90 {fmt_n(s['p90'], hq)} per arm, detected {pct(s['detected'])}")
    for r in res["srm"]["power"]:
        s = r["sequential"]
        ht = r["horizon_total"]
        print(f"SRM power ({r['case']}, alpha={r['alpha']}): median {fmt_n(s['median'], ht)}, "
              f"p90 {fmt_n(s['p90'], ht)} total requests, detected {pct(s['detected'])}")
    c = res["consistency"]
    print(f"\nlibrary vs vectorised decisions: {c['mismatches']} mismatches in {c['checked']} checks; "
          f"{res['seconds']:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer runs (< 1 minute)")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    runs = args.runs or (1000 if args.quick else 4000)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"seed": args.seed, "quick": args.quick, "alpha": ALPHA}
    res["rates_aa"] = rates_aa(rng, runs, args.quick)
    res["rates_power"] = rates_power(rng, runs, args.quick)
    res["rates_small"] = rates_small_sample(rng, runs, args.quick)
    res["mean_ratio_aa"] = mean_ratio_aa(rng, runs, args.quick)
    res["mean_ratio_power"] = mean_ratio_power(rng, runs, args.quick)
    res["paired"] = paired_checks(rng, runs, args.quick)
    res["quantile"] = quantile_aa(rng, min(runs, 1000), args.quick)
    res["srm"] = srm_checks(rng, runs, args.quick)
    res["consistency"] = consistency_check(rng)
    res["seconds"] = time.perf_counter() - t0
    print_tables(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=lambda o: None if o is None else float(o)))
    print(f"wrote {args.out}")
    if res["consistency"]["mismatches"]:
        raise SystemExit("vectorised simulation disagrees with the library")


if __name__ == "__main__":
    main()

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
from rollguard.detectors.sequential import (
    LOG_RATIO_TAU,
    QUANTILE_CONCENTRATION,
    RATE_TAU,
    QuantileView,
    RankTable,
    mean_ratio,
    mixture_radius_array,
    quantile_ratio,
    rate_increase,
    rate_variance,
)
from rollguard.detectors.srm import SRM_CONCENTRATION, srm, srm_log_e
from scipy import stats

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
    x_c: Array, n_c: Array, x_b: Array, n_b: Array, *, bound: float, tau: float = RATE_TAU, min_n: int = 100
) -> dict[str, NDArray[np.bool_]]:
    """Vectorised ``rate_increase`` (worse / not_worse) and the naive peeked one-sided z-test."""
    pc, pb = x_c / n_c, x_b / n_b
    d = pc - pb
    v = rate_variance(x_c, n_c, x_b, n_b)
    w = mixture_radius_array(v, tau, ALPHA)
    enough = (n_c >= min_n) & (n_b >= min_n)
    pooled = (x_c + x_b) / (n_c + n_b)
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * (1 / n_c + 1 / n_b), 1e-300))
    return {
        "worse": enough & (d - w > bound),
        "not_worse": enough & (d + w < bound),
        "naive": (d - bound) / se > Z,
    }


def rates_aa(rng: np.random.Generator, runs: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    cases = [
        ("escalation 3% vs 3%, 1:1, max_increase=0", 0.03, 0.03, 200, 200, 0.0, "worse"),
        ("escalation 3% vs 3%, 1:19 (5% canary), max_increase=0", 0.03, 0.03, 50, 950, 0.0, "worse"),
        ("error 0.5% vs 0.5%, 1:1, max_increase=0", 0.005, 0.005, 200, 200, 0.0, "worse"),
        ("escalation 4% vs 3% (on the bound), max_increase=0.01: false not_worse", 0.04, 0.03, 200, 200,
         0.01, "not_worse"),
    ]
    if quick:
        cases = cases[:2] + cases[3:]
    for name, p_c, p_b, wc, wb, bound, kind in cases:
        windows = 100
        x_c, n_c, x_b, n_b = simulate_rates(rng, runs, p_c, p_b, wc, wb, windows)
        dec = rate_decisions(x_c, n_c, x_b, n_b, bound=bound)
        ours = int(dec[kind].any(axis=1).sum())
        naive = int(dec["naive"].any(axis=1).sum()) if kind == "worse" else None
        single = int(dec["naive"][:, -1].sum()) if kind == "worse" else None
        rows.append({
            "case": name, "runs": runs, "peeks": windows, "horizon_per_arm": [wc * windows, wb * windows],
            "error": kind, "sequential_rate": ours / runs, "sequential_ci95": ci95(ours, runs),
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
    taus = [RATE_TAU] if quick else [0.005, RATE_TAU, 0.02]
    for rise in (0.01, 0.02, 0.05):
        x_c, n_c, x_b, n_b = simulate_rates(rng, runs, 0.03 + rise, 0.03, win, win, windows)
        row: dict[str, Any] = {"rise_pp": rise * 100, "runs": runs, "horizon_per_arm": horizon}
        for tau in taus:
            dec = rate_decisions(x_c, n_c, x_b, n_b, bound=0.0, tau=tau)
            row[f"sequential_tau={tau}"] = summarise_times(first_true(dec["worse"], n_at))
        dec = rate_decisions(x_c, n_c, x_b, n_b, bound=0.0)
        row["naive_peeking_invalid"] = summarise_times(first_true(dec["naive"], n_at))
        nf = fixed_horizon_n(0.03 + rise, 0.03)
        row["fixed_horizon_n_80pct_power"] = nf
        k = min(windows - 1, max(0, math.ceil(nf / win) - 1))
        row["fixed_horizon_power_sim"] = float(dec["naive"][:, k].mean())
        row["sequential_detected_by_fixed_n"] = float(dec["worse"][:, : k + 1].any(axis=1).mean())
        rows.append(row)
    return {"baseline_rate": 0.03, "max_increase": 0.0, "alpha": ALPHA, "window_per_arm": win, "rows": rows,
            "taus": taus}


# --------------------------------------------------------------------------------------------------
# Mean ratio (cost per request)
# --------------------------------------------------------------------------------------------------


def mean_ratio_aa(rng: np.random.Generator, runs: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    win, windows = 200, 100
    for sigma in (0.5, 1.0) if not quick else (1.0,):
        sums = np.zeros((2, runs, windows))
        sqs = np.zeros((2, runs, windows))
        for arm in range(2):
            for k in range(windows):
                x = rng.lognormal(math.log(0.002), sigma, size=(runs, win))
                sums[arm, :, k] = x.sum(axis=1)
                sqs[arm, :, k] = np.einsum("ij,ij->i", x, x)
        s, ss = np.cumsum(sums, axis=2), np.cumsum(sqs, axis=2)
        n = win * np.arange(1, windows + 1, dtype=float)
        m = s / n
        var = np.maximum((ss - n * m * m) / (n - 1), 0.0)
        v = var[0] / (n * m[0] ** 2) + var[1] / (n * m[1] ** 2)
        d = np.log(m[0] / m[1])
        w = mixture_radius_array(v, LOG_RATIO_TAU, ALPHA)
        worse = (d - w > 0.0) & (n >= 100)
        naive = d / np.sqrt(v) > Z
        ours = int(worse.any(axis=1).sum())
        rows.append({
            "case": f"cost lognormal(sigma={sigma}) A/A, max_ratio=1.0 (truth on the bound)",
            "runs": runs, "peeks": windows, "horizon_per_arm": win * windows,
            "sequential_rate": ours / runs, "sequential_ci95": ci95(ours, runs),
            "naive_peeking_rate": float(naive.any(axis=1).mean()),
            "fixed_horizon_single_look_rate": float(naive[:, -1].mean()),
        })
    return rows


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
    mismatches = 0
    x_c, n_c, x_b, n_b = simulate_rates(rng, samples, 0.05, 0.03, 200, 200, 50)
    dec = rate_decisions(x_c, n_c, x_b, n_b, bound=0.0)
    for i in range(samples):
        k = int(rng.integers(0, 50))
        v = rate_increase(int(x_c[i, k]), int(n_c[i, k]), int(x_b[i, k]), int(n_b[i, k]), max_increase=0.0)
        want = "worse" if dec["worse"][i, k] else ("not_worse" if dec["not_worse"][i, k] else "inconclusive")
        mismatches += v.outcome != want
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
        vm = mean_ratio(s1, float(xc @ xc), n, s2, float(xb @ xb), n, max_ratio=1.0)
        m1, m2 = s1 / n, s2 / n
        var = np.var(xc, ddof=1) / (n * m1 * m1) + np.var(xb, ddof=1) / (n * m2 * m2)
        wv = float(mixture_radius_array(np.asarray([var]), LOG_RATIO_TAU, ALPHA)[0])
        mismatches += (vm.outcome == "worse") != bool(math.log(m1 / m2) - wv > 0)
    c = rng.multinomial(4000, [0.95, 0.05], size=20)
    for row in c:
        r = srm(list(row), [0.95, 0.05], alpha=0.05)
        mismatches += r.mismatch != bool(srm_log_e(row, [0.95, 0.05]) >= -math.log(0.05))
    return {"checked": samples + 60, "mismatches": mismatches}


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def print_tables(res: dict[str, Any]) -> None:
    print(f"\nA/A false-alarm rate, peeked after every window (alpha = {ALPHA} one-sided unless noted)")
    print(f"{'case':<78} {'runs':>5} {'peeks':>5} {'sequential':>10} {'95% CI':>15} {'naive peek':>10} "
          f"{'1 look':>7}")
    aa_rows = res["rates_aa"] + res["mean_ratio_aa"] + [res["quantile"]["aa"]]
    for r in aa_rows:
        lo, hi = r["sequential_ci95"]
        print(f"{r['case']:<78} {r['runs']:>5} {r['peeks']:>5} {pct(r['sequential_rate']):>10} "
              f"{f'[{100 * lo:.1f},{100 * hi:.1f}]':>15} {pct(r.get('naive_peeking_rate')):>10} "
              f"{pct(r.get('fixed_horizon_single_look_rate')):>7}")
    for r in res["srm"]["aa"]:
        lo, hi = r["sequential_ci95"]
        name = f"{r['case']} alpha={r['alpha']}"
        print(f"{name:<78} {r['runs']:>5} {r['peeks']:>5} {pct(r['sequential_rate']):>10} "
              f"{f'[{100 * lo:.1f},{100 * hi:.1f}]':>15} {pct(r['naive_peeking_rate']):>10} {'-':>7}")

    pw = res["rates_power"]
    h = pw["rows"][0]["horizon_per_arm"]
    print(f"\nPower: events per arm to a 'worse' verdict, escalation 3% -> 3%+rise, max_increase=0, "
          f"alpha={ALPHA}, peek every {pw['window_per_arm']}/arm, horizon {h}/arm")
    head = f"{'rise':>5} " + " ".join(f"{'tau=' + str(t) + ' med/p90':>22}" for t in pw["taus"])
    print(head + f" {'naive peek med (invalid)':>25} {'fixed-horizon n (80%)':>22} {'seq by fixed n':>15}")
    for r in pw["rows"]:
        cells = []
        for t in pw["taus"]:
            s = r[f"sequential_tau={t}"]
            cells.append(f"{fmt_n(s['median'], h) + ' / ' + fmt_n(s['p90'], h):>22}")
        nv = r["naive_peeking_invalid"]
        print(f"{r['rise_pp']:>4.0f}pp " + " ".join(cells) + f" {fmt_n(nv['median'], h):>25} "
              f"{r['fixed_horizon_n_80pct_power']:>22} {pct(r['sequential_detected_by_fixed_n']):>15}")
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
    res["mean_ratio_aa"] = mean_ratio_aa(rng, runs, args.quick)
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

"""Drift detector benchmark: detection delay and false alarms on seeded synthetic streams.

    .venv/bin/python bench/detectors.py [--quick] [--out bench/results/detectors.json]

For every detector in ``rollguard.detectors.drift``: streams with a known change point
(median delay in events over seeds, misses) and stationary streams (false alarms per
million events), next to river's defaults on the same streams and the theoretical figures
from the papers where they exist. Also the per-event cost and pickled size of a whole
``DetectorBank``. Prints a markdown table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from river import drift as rdrift

from rollguard.detectors.drift import (
    BinaryRateDrift,
    CategoricalMixShift,
    DetectorBank,
    DistributionShift,
    LogScaleShift,
    MultivariateAnomaly,
)

Row = dict[str, Any]
PRE = 6000  # events before the change (covers every warm-up)
_FA_CACHE: dict[str, tuple[tuple[int, int], int]] = {}


def _alarms(make: Callable[[], Any], xs: Iterable[Any], episodes: bool) -> list[int]:
    """Indices of alarms: episode onsets (ours) or raw detections (river)."""
    det = make()
    out = []
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected and (not episodes or det.since == det.n):
            out.append(i)
    return out


def _river_alarms(make: Callable[[], Any], xs: Iterable[Any]) -> list[int]:
    det = make()
    out = []
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected:
            out.append(i)
    return out


def _delay(alarm_idx: list[int], cp: int) -> int | None:
    after = [i - cp for i in alarm_idx if i >= cp]
    return after[0] if after else None


def _summarise(delays: list[int | None]) -> tuple[float | None, int]:
    got = [d for d in delays if d is not None]
    return (float(np.median(got)) if got else None), len(delays) - len(got)


def _per_million(count: int, n: int) -> float:
    return count / n * 1e6


def scenario(
    name: str,
    setting: str,
    gen: Callable[[np.random.Generator, bool], list[Any]],
    ours: Callable[[], Any],
    river: Callable[[], Any] | None,
    reps: int,
    fa_n: int,
    river_fa_n: int,
    theory: dict[str, Any] | None = None,
    river_window: tuple[int, int] | None = None,
    cp: int = PRE,
) -> Row:
    """Run one change scenario (delay over ``reps`` seeds) and its stationary twin (false alarms)."""
    t0 = time.perf_counter()
    d_ours: list[int | None] = []
    d_river: list[int | None] = []
    early = 0
    for r in range(reps):
        xs = gen(np.random.default_rng(1000 + r), True)
        a = _alarms(ours, xs, episodes=True)
        early += sum(1 for i in a if i < cp)
        d_ours.append(_delay(a, cp))
        if river is not None:
            lo, hi = river_window or (0, len(xs))
            d_river.append(_delay(_river_alarms(river, xs[lo:hi]), cp - lo))
    # The stationary stream is the same for every setting of a detector: measure it once.
    if name not in _FA_CACHE:
        stat = gen(np.random.default_rng(7), False)
        while len(stat) < fa_n:
            stat += gen(np.random.default_rng(7 + len(stat)), False)
        stat = stat[:fa_n]
        fa = (len(_alarms(ours, stat, episodes=True)), len(_alarms(ours, stat, episodes=False)))
        rfa = len(_river_alarms(river, stat[:river_fa_n])) if river is not None else 0
        _FA_CACHE[name] = (fa, rfa)
    (fa_eps, fa_raw), rfa = _FA_CACHE[name]
    row: Row = {
        "detector": name,
        "setting": setting,
        "delay_median": _summarise(d_ours)[0],
        "missed": _summarise(d_ours)[1],
        "reps": reps,
        "false_alarms_before_change": early,
        "fa_per_million": _per_million(fa_eps, fa_n),
        "raw_detections_per_million": _per_million(fa_raw, fa_n),
        "fa_events": fa_n,
    }
    if river is not None:
        row["river_delay_median"], row["river_missed"] = _summarise(d_river)
        row["river_fa_per_million"] = _per_million(rfa, river_fa_n)
        row["river_fa_events"] = river_fa_n
    if theory:
        row["theory"] = theory
    row["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"  {name:22s} {setting:38s} {row['seconds']:6.1f}s", file=sys.stderr, flush=True)
    return row


# -- stream generators -------------------------------------------------------------------------


def bernoulli(
    p0: float, p1: float, post: int, pre: int = PRE
) -> Callable[[np.random.Generator, bool], list[Any]]:
    def gen(rng: np.random.Generator, change: bool) -> list[Any]:
        a = (rng.random(pre) < p0).tolist()
        b = (rng.random(post) < (p1 if change else p0)).tolist()
        return a + b

    return gen


def lognormal(
    mu: float, sigma: float, factor: float, post: int, integer: bool = False
) -> Callable[..., list[Any]]:
    def gen(rng: np.random.Generator, change: bool) -> list[Any]:
        x = rng.lognormal(mu, sigma, PRE + post)
        if change:
            x[PRE:] *= factor
        if integer:
            x = np.maximum(np.round(x), 1.0)
        return x.tolist()

    return gen


def multivariate(frac_bad: float, lat_factor: float, post: int) -> Callable[..., list[Any]]:
    def gen(rng: np.random.Generator, change: bool) -> list[Any]:
        n = PRE + post
        lat = rng.lognormal(6.5, 0.35, n)
        tin = rng.lognormal(6.0, 0.5, n)
        tout = rng.lognormal(5.0, 0.5, n)
        if change:
            lat[PRE:] *= lat_factor
            bad = np.zeros(n, dtype=bool)
            bad[PRE:] = rng.random(post) < frac_bad
            lat[bad] *= 20.0  # timeouts
            tout[bad] = 0.0
        cost = 1e-6 * (tin + 3 * tout)
        chars = 4.0 * tout
        return [
            list(r)
            for r in zip(
                lat.tolist(), tin.tolist(), tout.tolist(), cost.tolist(), chars.tolist(), strict=True
            )
        ]

    return gen


def categorical(p0: list[float], p1: list[float], post: int) -> Callable[..., list[Any]]:
    cats = np.array([f"c{i}" for i in range(len(p0))])

    def gen(rng: np.random.Generator, change: bool) -> list[Any]:
        a = cats[rng.choice(len(p0), PRE, p=p0)]
        b = cats[rng.choice(len(p0), post, p=p1 if change else p0)]
        return a.tolist() + b.tolist()

    return gen


# -- theory ------------------------------------------------------------------------------------


def siegmund_arl(k: float, h: float, mu: float = 0.0) -> float:
    """Siegmund's approximation to the one-sided CUSUM ARL for N(mu, 1) data, reference k."""
    b = h + 1.166
    d = mu - k
    if abs(d) < 1e-9:
        return b * b
    return (math.exp(-2 * d * b) + 2 * d * b - 1) / (2 * d * d)


# -- main --------------------------------------------------------------------------------------


def bank_cost(n: int) -> Row:
    rng = np.random.default_rng(3)
    lat = rng.lognormal(6.5, 0.4, n).tolist()
    tout = np.round(rng.lognormal(5, 0.5, n)).tolist()
    tin = np.round(rng.lognormal(6, 0.5, n)).tolist()
    err = (rng.random(n) < 0.01).tolist()
    uc = rng.choice(["billing", "tech", "account"], n, p=[0.5, 0.3, 0.2]).tolist()
    sc = rng.choice(["latin", "cyrillic", "cjk"], n, p=[0.8, 0.15, 0.05]).tolist()
    pl = rng.integers(50, 4000, n).tolist()
    bank = DetectorBank(seed=1)
    warm = min(8000, n // 2)

    def feed(i: int) -> None:
        bank.update(
            latency_ms=lat[i], cost_usd=1e-6 * (tin[i] + 3 * tout[i]), input_tokens=tin[i],
            output_tokens=tout[i], output_chars=4 * tout[i], prompt_chars=pl[i], script=sc[i],
            use_case=uc[i], error=err[i], refused=False, fallback=err[i], guard_failed=False,
        )  # fmt: skip

    for i in range(warm):
        feed(i)
    t0 = time.perf_counter()
    for i in range(warm, n):
        feed(i)
    us = (time.perf_counter() - t0) / (n - warm) * 1e6
    blob = pickle.dumps(bank, protocol=5)
    t1 = time.perf_counter()
    for _ in range(20):
        pickle.loads(pickle.dumps(bank, protocol=5))
    rt = (time.perf_counter() - t1) / 20 * 1e3
    sizes = {k: len(pickle.dumps(v, protocol=5)) for k, v in bank.detectors.items()}
    return {"us_per_event": us, "pickle_bytes": len(blob), "pickle_roundtrip_ms": rt, "detector_bytes": sizes}


def run(quick: bool) -> dict[str, Any]:
    reps = 5 if quick else 20
    big = 200_000 if quick else 1_000_000
    mid = 60_000 if quick else 300_000
    rows: list[Row] = []
    k, h = 0.25, 25.0

    # Binary outcome rates: ADWIN (ours keeps W1; river's resets) ------------------------------
    # ADWIN's resolution depends on the pre-change history it holds: give it 30k events (at a
    # 2 % base rate that is 600 bad outcomes, a realistic baseline period).
    for p1 in (0.03, 0.04, 0.06):
        rows.append(scenario(
            "BinaryRateDrift", f"Bernoulli 0.02 -> {p1} (30k before)", bernoulli(0.02, p1, 30_000, 30_000),
            BinaryRateDrift, rdrift.ADWIN, reps, big, big,
            {"bound_fa_per_million": 0.002 * 1e6 / 32,
             "source": "Bifet & Gavalda 2007, Thm 3.1: P(false cut) <= delta per check (clock 32)"},
            cp=30_000,
        ))  # fmt: skip

    # Log latency: Page-Hinkley in sd units vs river's defaults on raw ms -----------------------
    sigma = 0.5
    for f in (1.1, 1.3, 1.5, 2.0):
        shift = math.log(f) / sigma
        rows.append(scenario(
            "LogScaleShift", f"lognormal(6.5, {sigma}) latency x{f} ({shift:.2f} sd)",
            lognormal(6.5, sigma, f, 6000), LogScaleShift, rdrift.PageHinkley, reps, big, big // 5,
            {"siegmund_delay": round(siegmund_arl(k, h, shift), 1),
             "siegmund_fa_per_million_two_sided": round(2e6 / siegmund_arl(k, h), 3),
             "source": "Siegmund 1985 approximation for CUSUM (Page 1954), k=0.25, h=25"},
        ))  # fmt: skip

    # Output length: KSWIN on block means vs river KSWIN per value -----------------------------
    for f in (0.7, 0.85, 1.3):
        rows.append(scenario(
            "DistributionShift", f"output tokens lognormal(5, 0.6) x{f}",
            lognormal(5.0, 0.6, f, 8000, integer=True), DistributionShift,
            lambda: rdrift.KSWIN(seed=1), min(reps, 5), mid, 10_000 if quick else 30_000,
            {"nominal_fa_per_million": 1e-5 / 16 * 1e6, "source": "alpha per KS test / block"},
            river_window=(PRE - 200, PRE + 2000),
        ))  # fmt: skip

    # Multivariate anomaly rate: HST ------------------------------------------------------------
    for frac, lf, label in (
        (0.05, 1.0, "5% timeouts"),
        (0.02, 1.0, "2% timeouts"),
        (0.0, 1.5, "all latency x1.5"),
    ):
        rows.append(scenario(
            "MultivariateAnomaly", f"5 features, {label}", multivariate(frac, lf, 4000),
            lambda: MultivariateAnomaly(seed=1), None, min(reps, 5), mid, 0,
        ))  # fmt: skip

    # Categorical mix ----------------------------------------------------------------------------
    p0 = [0.6, 0.3, 0.1]
    for p1 in ([0.5, 0.3, 0.2], [0.4, 0.3, 0.3], [0.55, 0.3, 0.15]):
        rows.append(scenario(
            "CategoricalMixShift", f"mix {p0} -> {p1}", categorical(p0, p1, 10_000),
            CategoricalMixShift, None, reps, big, 0,
            {"nominal_fa_per_million": 1e-6 / 500 * 1e6, "source": "alpha per tumbling window"},
        ))  # fmt: skip

    # Per-event alerting baselines where river has no comparable detector
    hst = MultivariateAnomaly(seed=1)
    stat = multivariate(0, 1, 0)(np.random.default_rng(9), False)
    while len(stat) < mid:
        stat += multivariate(0, 1, 0)(np.random.default_rng(9 + len(stat)), False)
    flagged = 0
    for i, x in enumerate(stat[:mid]):
        hst.update(x)
        if i > 2000 and hst.score_threshold is not None and hst.score >= hst.score_threshold:
            flagged += 1
    per_event_hst = _per_million(flagged, mid)

    cost = bank_cost(20_000 if quick else 60_000)
    return {
        "quick": quick,
        "rows": rows,
        "per_event_hst_alerts_per_million": per_event_hst,
        "bank": cost,
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if v >= 10 or v == 0 else f"{v:.2g}"
    return str(v)


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "| detector | setting | delay (median events) | missed | FA/M (episodes) | raw det./M "
        "| river default: delay | river default: FA/M | theory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        th = r.get("theory") or {}
        tt = ", ".join(f"{k}={_fmt(v)}" for k, v in th.items() if k != "source")
        rd = r.get("river_delay_median")
        rm = r.get("river_missed")
        lines.append(
            f"| {r['detector']} | {r['setting']} | {_fmt(r['delay_median'])} | {r['missed']}/{r['reps']} "
            f"| {_fmt(r['fa_per_million'])} | {_fmt(r['raw_detections_per_million'])} "
            f"| {_fmt(rd) if 'river_delay_median' in r else 'n/a'}"
            f"{f' ({rm} missed)' if rm else ''} "
            f"| {_fmt(r.get('river_fa_per_million')) if 'river_fa_per_million' in r else 'n/a'} | {tt} |"
        )
    b = res["bank"]
    lines += [
        "",
        f"Per-event HST alerts (no rate gating) on the stationary stream: "
        f"{res['per_event_hst_alerts_per_million']:.0f} per million.",
        "",
        f"DetectorBank (13 detectors, one segment x variant): {b['us_per_event']:.1f} µs/event, "
        f"pickled {b['pickle_bytes']} bytes, pickle round-trip {b['pickle_roundtrip_ms']:.2f} ms.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer seeds and shorter streams (< 30 s)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "detectors.json"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(args.quick)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(markdown(res))
    print(f"\n({res['seconds']} s; JSON in {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

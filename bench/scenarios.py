"""Scenario bench: every preset of ``rollguard.simulate.SCENARIOS`` x many seeds, judged by rollguard (the
worker's own step functions via ``rollguard.replay``) and by the comparators in ``bench/comparators.py`` over
the same events. Prints a markdown table and writes ``bench/results/scenarios.json``.

    python bench/scenarios.py            # 20 seeds per scenario
    python bench/scenarios.py --quick    # 5 seeds (~3 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/scenarios.py` from the repo root
    sys.path.insert(0, str(ROOT))

from bench.comparators import Action, EventFrame, KayentaJudge, ThresholdPolicy, metrics_for  # noqa: E402
from rollguard.pipeline import Analyzer, SpecBook  # noqa: E402
from rollguard.replay import replay  # noqa: E402
from rollguard.simulate import SCENARIOS, GroundTruth, Scenario  # noqa: E402
from rollguard.spec import RolloutSpec, load_spec, parse_spec  # noqa: E402

SHIPPED_SPEC = ROOT / "rollguard" / "specs" / "support-reply.yaml"
SYSTEMS = ("rollguard", "threshold", "threshold-fl0", "kayenta")
#: after rollguard's first action, replay this many more responses (later actions still count), then stop
STOP_MARGIN = 4000
SEED_BASE = 1000


def spec_for(sc: Scenario) -> RolloutSpec:
    """The scenario's spec: its own, or the shipped support-reply spec plus any extra criteria."""
    if sc.spec is not None:
        return parse_spec(sc.spec)
    if not sc.extra_criteria:
        return load_spec(SHIPPED_SPEC)
    data = yaml.safe_load(SHIPPED_SPEC.read_text())
    data["criteria"] = [*data["criteria"], *sc.extra_criteria]
    return parse_spec(data)


def run_rollguard(raw: list[bytes], resp_index: list[int], spec: RolloutSpec, *, full: bool) -> list[Action]:
    """Replay with flush_every=200; each command is placed at the last response folded before its flush."""
    analyzer = Analyzer(SpecBook({spec.feature: spec}))
    found: list[dict[str, Any]] = []
    apply = analyzer.apply

    def spy(value: bytes, **kw: Any) -> Any:
        out = apply(value, **kw)
        found.extend(orjson.loads(e.value) | {"_at": None} for e in out if e.kind == "control")
        return out

    analyzer.apply = spy  # type: ignore[method-assign,assignment]
    state = {"stop": len(raw)}

    def records() -> Iterator[bytes]:
        for j, r in enumerate(raw):
            if j >= state["stop"]:
                return
            yield r

    def progress(done: int) -> None:
        at = resp_index[done - 1]
        for c in found:
            if c["_at"] is None:
                c["_at"] = at
        if found and not full and state["stop"] == len(raw):
            target = at + STOP_MARGIN
            state["stop"] = next((j for j in range(done, len(raw)) if resp_index[j] >= target), len(raw))

    res = replay(records(), SpecBook({spec.feature: spec}), flush_every=200, analyzer=analyzer,
                 on_progress=progress)
    end = resp_index[res.records - 1] if res.records else 0
    return [Action(str(c["action"]), end if c["_at"] is None else int(c["_at"]), str(c["evidence"]["metric"]),
                   dict(c["scope"]), {"evidence": c["evidence"]}) for c in found]


def run_one(task: tuple[str, int, bool]) -> dict[str, Any]:
    """One scenario and seed, all systems over the same events."""
    name, seed, full = task
    sc = SCENARIOS[name]
    spec = spec_for(sc)
    t0 = time.perf_counter()
    events = list(sc.traffic(seed).events(sc.n))
    raw = [orjson.dumps(e) for e in events]
    resp_index: list[int] = []
    k = -1
    for e in events:
        if e["schema"].startswith("rollguard.response"):
            k += 1
        resp_index.append(max(k, 0))
    out: dict[str, Any] = {"scenario": name, "seed": seed, "responses": k + 1, "actions": {}}
    t1 = time.perf_counter()
    out["actions"]["rollguard"] = run_rollguard(raw, resp_index, spec, full=full)
    t2 = time.perf_counter()
    frame = EventFrame.from_events(events, candidate=spec.candidate)
    metrics = metrics_for(spec)
    out["actions"]["threshold"] = ThresholdPolicy().run(frame, metrics)
    out["actions"]["threshold-fl0"] = ThresholdPolicy(failure_limit=0, name="threshold-fl0").run(frame, metrics)
    out["actions"]["kayenta"] = KayentaJudge().run(frame, metrics)
    out["seconds"] = {"generate": t1 - t0, "rollguard": t2 - t1, "comparators": time.perf_counter() - t2}
    out["actions"] = {s: [a.__dict__ for a in acts] for s, acts in out["actions"].items()}
    return out


# -------------------------------------------------------------------------------------------- scoring


def within(scope: dict[str, str], truth: dict[str, str]) -> bool:
    """True if every request in ``scope`` is inside the ground-truth segment (scope no wider than truth)."""
    return all(scope.get(k) == v for k, v in truth.items())


def judge_run(actions: list[dict[str, Any]], truth: GroundTruth) -> dict[str, Any]:
    """Per run: first detection (events after onset), false actions, wrong-segment actions."""
    acts = sorted(actions, key=lambda a: a["at"])
    if not truth.regression:
        return {"detected": False, "events": None, "false": bool(acts), "wrong_segment": 0,
                "wrong_segment_rollbacks": 0, "metric_ok": None, "action_ok": None}
    early = [a for a in acts if a["at"] < truth.start]
    late = [a for a in acts if a["at"] >= truth.start]
    wrong = [a for a in acts if not within(a["scope"], truth.scope)]
    first = late[0] if late else None
    return {
        "detected": first is not None,
        "events": first["at"] - truth.start if first else None,
        "false": bool(early),
        "wrong_segment": len(wrong),
        "wrong_segment_rollbacks": sum(a["action"] == "rollback" for a in wrong),
        "metric_ok": first["metric"] == truth.metric if first else None,
        "action_ok": first["action"] == truth.action if first else None,
        "scope_ok": first["scope"] == truth.scope if first else None,
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, sc in SCENARIOS.items():
        runs = [r for r in results if r["scenario"] == name]
        if not runs:
            continue
        out[name] = {}
        for system in SYSTEMS:
            judged = [judge_run(r["actions"][system], sc.truth) for r in runs]
            ev = sorted(j["events"] for j in judged if j["events"] is not None)
            firsts = [j for j in judged if j["detected"]]
            out[name][system] = {
                "runs": len(runs),
                "detection_rate": sum(j["detected"] for j in judged) / len(runs),
                "median_events": float(np.median(ev)) if ev else None,  # among detected runs
                # undetected runs count as never (inf): the fair comparison when detection rates differ
                "censored_median_events": float(np.median(
                    [math.inf if j["events"] is None else j["events"] for j in judged])) if sc.truth.regression
                else None,
                "p90_events": ev[min(len(ev) - 1, math.ceil(0.9 * len(ev)) - 1)] if ev else None,
                "false_action_rate": sum(j["false"] for j in judged) / len(runs),
                "wrong_segment_runs": sum(j["wrong_segment"] > 0 for j in judged),
                "wrong_segment_rollback_runs": sum(j["wrong_segment_rollbacks"] > 0 for j in judged),
                "right_metric": (sum(bool(j["metric_ok"]) for j in firsts) / len(firsts)) if firsts else None,
                "right_scope": (sum(bool(j.get("scope_ok")) for j in firsts) / len(firsts)) if firsts else None,
                "bad_seeds": [r["seed"] for r, j in zip(runs, judged, strict=True)
                              if j["false"] or j["wrong_segment"] or (sc.truth.regression and not j["detected"])],
            }
    return out


def targets(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The issue's targets, checked on this run (medians censored: a run that never detects counts as inf)."""
    faster: dict[str, bool] = {}
    for name, systems in summary.items():
        if not SCENARIOS[name].truth.regression:
            continue
        rg_m = systems["rollguard"]["censored_median_events"]
        th_m = systems["threshold"]["censored_median_events"]
        faster[name] = rg_m < th_m
    aa = summary.get("aa", {}).get("rollguard", {})
    return {
        "faster_than_threshold": faster,
        "all_faster": all(faster.values()),
        "aa_false_rate": aa.get("false_action_rate"),
        "aa_ok": aa.get("false_action_rate", 1.0) <= 0.01,
        "wrong_segment_rollbacks": sum(s["rollguard"]["wrong_segment_rollback_runs"] for s in summary.values()),
    }


def _fmt_events(s: dict[str, Any]) -> str:
    if s["median_events"] is None:
        return "–"
    return f"{s['median_events']:,.0f} / {s['p90_events']:,.0f}"


def table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = ["| scenario | ground truth | system | detected | events to detection (median / p90) | "
             "false pause/rollback | wrong-segment runs (rollbacks) | right metric / scope |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, systems in summary.items():
        t = SCENARIOS[name].truth
        truth = "none" if not t.regression else (
            f"{t.action} {','.join(f'{k}={v}' for k, v in t.scope.items()) or 'all'} {t.metric} @{t.start:,}")
        for i, system in enumerate(SYSTEMS):
            s = systems[system]
            det = f"{s['detection_rate']:.0%}" if t.regression else "n/a"
            rm = "–" if s["right_metric"] is None else f"{s['right_metric']:.0%} / {s['right_scope']:.0%}"
            lines.append(f"| {name if i == 0 else ''} | {truth if i == 0 else ''} | {system} | {det} | "
                         f"{_fmt_events(s) if t.regression else '–'} | {s['false_action_rate']:.0%} | "
                         f"{s['wrong_segment_runs']} ({s['wrong_segment_rollback_runs']}) | {rm} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="5 seeds per scenario")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="only these (repeatable)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--full", action="store_true", help="replay whole streams (no stop after the first action)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scenarios.json")
    ap.add_argument("--rescore", action="store_true", help="re-summarise the runs stored in --out")
    args = ap.parse_args(argv)
    seeds = 5 if args.quick else args.seeds
    names = args.scenario or list(SCENARIOS)
    t0 = time.perf_counter()
    stored: dict[str, Any] = {}
    if args.rescore:
        stored = json.loads(args.out.read_text())
        results = [r for r in stored["runs"] if r["scenario"] in names]
        seeds = stored["seeds"]
        names = [n for n in SCENARIOS if any(r["scenario"] == n for r in results)]
        tasks: list[tuple[str, int, bool]] = [(r["scenario"], r["seed"], args.full) for r in results]
    else:
        tasks = [(n, SEED_BASE + k, args.full) for n in names for k in range(seeds)]
        tasks.sort(key=lambda t: -SCENARIOS[t[0]].n)
        results = []
        with get_context("fork").Pool(args.jobs) as pool:
            for i, r in enumerate(pool.imap_unordered(run_one, tasks), 1):
                results.append(r)
                print(f"\r{i}/{len(tasks)} runs, {time.perf_counter() - t0:.0f} s", end="", file=sys.stderr)
        print(file=sys.stderr)
    results.sort(key=lambda r: (names.index(r["scenario"]), r["seed"]))
    summary = summarize(results)
    tg = targets(summary)
    md = table(summary)
    wall = stored["wall_s"] if args.rescore else time.perf_counter() - t0
    print(md)
    print()
    print(f"targets: rollguard faster than threshold in every regression scenario: {tg['all_faster']} "
          f"{'' if tg['all_faster'] else [k for k, v in tg['faster_than_threshold'].items() if not v]}; "
          f"A/A false rate {tg['aa_false_rate']} (<= 1 %: {tg['aa_ok']}); "
          f"wrong-segment rollbacks {tg['wrong_segment_rollbacks']} (target 0)")
    print(f"{len(tasks)} runs, {seeds} seeds, {wall:.0f} s wall, {args.jobs} jobs, {platform.processor() or ''} "
          f"{os.cpu_count()} cpus")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "seeds": seeds, "seed_base": SEED_BASE, "wall_s": round(wall, 1), "jobs": args.jobs,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "stop_margin": None if args.full else STOP_MARGIN, "summary": summary, "targets": tg, "table": md,
        "runs": results,
    }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

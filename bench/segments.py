"""Memory per active segment: 10,000 distinct segments through the fold and the analysis (no Kafka).

Seeded; prints bytes per segment for the ingest fold (between flushes) and for the analysis state (stage
totals, views, the serialised checkpoint), measured with tracemalloc. Usage: python bench/segments.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path

import orjson

sys.path[:] = [p for p in sys.path if not p.endswith("/bench")]  # bench/statistics.py shadows the stdlib

from rollguard.pipeline import Analyzer, IngestFold, SpecBook  # noqa: E402
from rollguard.simulate import Traffic  # noqa: E402
from rollguard.spec import parse_spec  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_seg = 2_000 if args.quick else args.segments
    spec = parse_spec({
        "feature": "support-reply", "flag": "f", "segment_by": ["tier", "account"],
        "stages": [{"name": "canary", "weight": 0.25}],
        "criteria": [{"metric": "error_rate", "max_increase": 0.02, "action": "pause"}],
    })
    specs = SpecBook({spec.feature: spec})
    rng = random.Random(5)
    events = []
    for i, ev in enumerate(Traffic(seed=5).events(n_seg * 3)):
        if ev["schema"].endswith("response/v1"):
            ev["segment"] = {"tier": ev["segment"]["tier"], "account": f"acct-{i // 2 % n_seg}"}
            events.append(orjson.dumps(ev))
    rng.shuffle(events)
    fold = IngestFold(specs, max_segments_per_feature=n_seg + 10)
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    for i, raw in enumerate(events):
        fold.process(raw, topic="t", partition=0, offset=i)
    fold_mem = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    partials = fold.flush()
    analyzer = Analyzer(specs)
    base = tracemalloc.take_snapshot()
    t0 = time.perf_counter()
    for p in partials:
        analyzer.apply(p.value)
    analyze_s = time.perf_counter() - t0
    an_mem = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    rt = analyzer.features[spec.feature]
    segs = sum(len(v) for v in rt.stage_stats.values())
    checkpoint = len(rt.to_bytes())
    partial_bytes = sum(len(p.value) for p in partials)
    result = {
        "segments": n_seg, "segment_arm_cells": segs, "responses": len(events),
        "fold_bytes_per_segment": round(fold_mem / n_seg), "analysis_bytes_per_segment": round(an_mem / n_seg),
        "checkpoint_bytes_per_segment": round(checkpoint / n_seg), "partial_bytes_per_segment": round(
            partial_bytes / n_seg), "analysis_step_s": round(analyze_s, 3),
    }
    print("| segments | fold B/segment | analysis B/segment | checkpoint B/segment | partial B/segment | "
          "one analysis step |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {n_seg:,} | {result['fold_bytes_per_segment']:,} | {result['analysis_bytes_per_segment']:,} | "
          f"{result['checkpoint_bytes_per_segment']:,} | {result['partial_bytes_per_segment']:,} | {analyze_s:.2f} s |")
    out = Path("bench/results") / ("quick" if args.quick else "") / "segments.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

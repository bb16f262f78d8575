"""Ingest throughput per worker on the real broker, as ratios measured side by side in one run.

Same topic contents (seeded ``rollguard.simulate.Traffic`` responses + outcomes, orjson-encoded, keyed by
request_id, 4 partitions each) read by:

  (c) the rollguard worker (``python -m rollguard.cli worker``, a subprocess; ingest is its confluent-kafka loop,
      ``rollguard.streams.ingest``, the analysis a Faust agent): started on empty topics, warmed up with a small
      batch until its ingest group has committed the end (so start-up, group join and recovery are excluded),
      then the N records are produced as fast as possible; time = first produce -> the worker's last partial
      aggregate (its CreateTime), cross-checked by the time its committed offsets reach the end (the loop
      commits after each batch's partials are delivered);
  (a) a raw confluent-kafka Consumer doing nothing with the records (``consume(10000)`` batches, and a
      per-message ``poll()`` variant), time = first batch -> last record, records after the first batch;
  (b) a bare Faust agent (``take_events(5000, within=0.25)``, body ``pass``, same app settings as the worker),
      a subprocess, timed the same way;
  (d) ``rollguard.pipeline.IngestFold.process`` in-process over the same bytes, no Kafka (µs/record), and a
      cProfile of it (top functions by cumulative time).

Run: .venv/bin/python bench/ingest.py [--quick] [--records N] [--seed S]   (writes bench/results/ingest.json)
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if not __package__:  # run as a script: bench/ must not shadow stdlib modules (bench/statistics.py)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

from bench.kafka_bench import (  # noqa: E402
    BOOTSTRAP,
    REPO,
    SPEC,
    GroupWatch,
    Proc,
    cleanup_proc,
    delete_prefixed_topics,
    encode_events,
    fresh_prefix,
    machine,
    md_table,
    produce_all,
    producer,
    read_topic,
    settings_for,
    spawn_worker,
    write_json,
)

WARMUP_RESPONSES = 250


# ------------------------------------------------------------------------------------------ (d) in-process
def _fold(settings: Any) -> Any:
    from rollguard.pipeline import IngestFold, SpecBook
    from rollguard.spec import load_specs

    specs = SpecBook(load_specs(SPEC), max_scan_chars=settings.max_scan_chars)
    return IngestFold(specs, window_s=60, max_event_bytes=settings.max_event_bytes,
                      max_scan_chars=settings.max_scan_chars,
                      max_segments_per_feature=settings.max_segments_per_feature)


def _run_fold(fold: Any, records: list[tuple[str, bytes, bytes]], batch: int = 5000) -> int:
    """What the ingest loop does per batch: process each record, then flush the partials."""
    offsets: dict[str, int] = {}
    emitted = 0
    for i, (topic, key, value) in enumerate(records):
        off = offsets.get(topic, 0)
        offsets[topic] = off + 1
        emitted += len(fold.process(value, topic=topic, partition=0, offset=off, key=key))
        if (i + 1) % batch == 0:
            emitted += len(fold.flush())
    emitted += len(fold.flush())
    return emitted


def in_process(settings: Any, records: list[tuple[str, bytes, bytes]], repeats: int = 2) -> dict[str, Any]:
    best = float("inf")
    for _ in range(repeats):
        fold = _fold(settings)
        t = time.perf_counter()
        _run_fold(fold, records)
        best = min(best, time.perf_counter() - t)
    c = fold.counters
    return {"records": len(records), "seconds": best, "us_per_record": best / len(records) * 1e6,
            "records_per_s": len(records) / best, "dlq": c.dlq, "responses": c.responses, "outcomes": c.outcomes,
            "outcomes_joined": c.outcomes_joined}


def profile(settings: Any, records: list[tuple[str, bytes, bytes]], top: int) -> tuple[str, list[dict[str, Any]]]:
    fold = _fold(settings)
    _run_fold(fold, records[:1000])  # imports, guard compilation, first-segment allocation
    prof = cProfile.Profile()
    prof.enable()
    _run_fold(fold, records)
    prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative")
    st.print_stats(top)
    rows = []
    for func in st.fcn_list[:top]:  # type: ignore[attr-defined]
        _cc, nc, tt, ct, _callers = st.stats[func]  # type: ignore[attr-defined]
        rows.append({"function": f"{func[0]}:{func[1]}({func[2]})", "ncalls": nc, "tottime_s": round(tt, 4),
                     "cumtime_s": round(ct, 4), "cum_us_per_record": round(ct / len(records) * 1e6, 2)})
    text = buf.getvalue()
    start = text.find("   ncalls")
    return (text[start:] if start >= 0 else text).rstrip(), rows


# ------------------------------------------------------------------------------------------ (c) worker
def worker_run(settings: Any, warm: list[tuple[str, bytes, bytes]], main: list[tuple[str, bytes, bytes]],
               timeout: float) -> dict[str, Any]:
    from rollguard.signing import generate_keypair

    priv, _pub = generate_keypair()
    t_spawn = time.monotonic()
    proc = spawn_worker(settings, SPEC, "bench", priv)
    watch = GroupWatch.worker(settings, [settings.topics.pairs, settings.topics.outcomes])
    prod = producer(settings)
    try:
        produce_all(prod, warm)
        watch.wait_caught_up(watch.ends(), timeout=120, step=0.1, proc=proc.p)
        t_ready = time.monotonic()
        time.sleep(1.0)  # let the analyze agent finish the warm-up partials
        t0_wall, t0 = time.time(), time.monotonic()
        produce_all(prod, main)
        t_produced = time.monotonic()
        ends = watch.ends()
        t_lag0 = watch.wait_caught_up(ends, timeout=timeout, step=0.02, proc=proc.p)
        # the worker emits a partial after every ingest batch; with the backlog gone it emits no more, so the
        # newest partial's CreateTime is when it finished the last batch of the N records
        partials = [m for m in read_topic(settings, settings.topics.partials) if m.timestamp()[1] >= t0_wall * 1000]
        t_last_partial = max(m.timestamp()[1] for m in partials) / 1000.0 if partials else float("nan")
        dlq = len(read_topic(settings, settings.topics.dlq))
    except BaseException:
        print(proc.tail(), file=sys.stderr)
        raise
    finally:
        cleanup_proc(proc)
        watch.close()
    n = len(main)
    busy = t_last_partial - t0_wall
    return {
        "records": n, "startup_to_ready_s": round(t_ready - t_spawn, 2), "produce_s": round(t_produced - t0, 3),
        "seconds_to_last_partial": round(busy, 3), "seconds_to_lag0": round(t_lag0 - t0, 3),
        "records_per_s": n / busy, "records_per_s_by_lag": n / (t_lag0 - t0),
        "partials_during_run": len(partials), "dlq_records": dlq,
    }


# ------------------------------------------------------------------------------------------ (a) raw consumer
def raw_consume(settings: Any, total: int, mode: str, timeout: float = 120) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(settings.librdkafka(**{"group.id": f"bench-raw-{uuid.uuid4().hex}", "enable.auto.commit": False}))
    t = settings.topics
    md = c.list_topics(timeout=10)
    c.assign([TopicPartition(tp, p, OFFSET_BEGINNING) for tp in (t.pairs, t.outcomes)
              for p in md.topics[tp].partitions])
    count = first_batch = 0
    t_first = t_last = 0.0
    nbytes = 0
    deadline = time.monotonic() + timeout
    try:
        while count < total and time.monotonic() < deadline:
            if mode == "consume":
                # never ask for more than remain: consume() waits for a full batch or the timeout
                msgs = c.consume(min(5000, total - count), 1.0)
            else:
                m = c.poll(1.0)
                msgs = [m] if m is not None else []
            if not msgs:
                continue
            now = time.monotonic()
            n = 0
            for m in msgs:
                if m.error() is None:
                    n += 1
                    nbytes += len(m.value() or b"")  # touch the value, do nothing with it
            if not t_first:
                t_first, first_batch = now, n
            count += n
            t_last = now
    finally:
        c.close()
    if count < total:
        raise TimeoutError(f"raw consumer read {count}/{total}")
    return {"records": count, "records_per_s": (count - first_batch) / (t_last - t_first),
            "seconds": round(t_last - t_first, 3)}


# ------------------------------------------------------------------------------------------ (b) bare Faust
def bare_faust(settings: Any, prefix: str, total: int, timeout: float = 180) -> dict[str, Any]:
    app_id = f"{prefix}-bare"
    out_dir = Path(tempfile.mkdtemp(prefix="rollguard-bench-bare-"))
    out = out_dir / "result.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t = settings.topics
    proc = Proc([sys.executable, "-m", "bench.kafka_bench", "faust-bare", "--bootstrap", settings.bootstrap,
                 "--topics", f"{t.pairs},{t.outcomes}", "--app-id", app_id, "--target", str(total),
                 "--partitions", str(settings.partitions), "--out", str(out)], env, "faust")
    try:
        deadline = time.monotonic() + timeout
        while not out.exists():
            if not proc.alive():
                raise RuntimeError(f"bare Faust exited with {proc.p.returncode}:\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare Faust did not reach {total} records:\n{proc.tail()}")
            time.sleep(0.1)
        r = orjson.loads(out.read_bytes())
    finally:
        cleanup_proc(proc)
        shutil.rmtree(out_dir, ignore_errors=True)
    return {"records": r["count"], "records_per_s": (r["count"] - r["first_batch"]) / (r["t_last"] - r["t_first"]),
            "seconds": round(r["t_last"] - r["t_first"], 3)}


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="20k records instead of 100k")
    ap.add_argument("--records", type=int, default=None, help="records to ingest (responses + outcomes)")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--raw-repeats", type=int, default=3)
    ap.add_argument("--profile-top", type=int, default=12)
    ap.add_argument("--out", default="ingest")
    a = ap.parse_args(argv)
    n_records = a.records or (20_000 if a.quick else 100_000)

    from rollguard.simulate import Traffic
    from rollguard.topics import create_topics

    prefix = fresh_prefix("in")
    settings = settings_for(prefix)
    main_recs = encode_events(Traffic(seed=a.seed).events(n_records // 2), settings)
    warm = encode_events(Traffic(seed=a.seed + 1).events(WARMUP_RESPONSES), settings)
    total = len(main_recs) + len(warm)
    mean_b = sum(len(r[2]) for r in main_recs) / len(main_recs)
    print(f"ingest bench: broker {BOOTSTRAP}, topics {prefix}.*, {len(main_recs):,} records "
          f"({n_records // 2:,} responses + outcomes, mean {mean_b:.0f} B), "
          f"seed {a.seed}", flush=True)

    res: dict[str, Any] = {"machine": machine(), "seed": a.seed, "records": len(main_recs), "warmup": len(warm),
                           "prefix": prefix, "spec": str(SPEC.relative_to(REPO))}
    print("(d) in-process IngestFold.process ...", flush=True)
    res["in_process"] = in_process(settings, main_recs)
    prof_recs = main_recs[: min(len(main_recs), 20_000)]
    prof_text, res["profile_top"] = profile(settings, prof_recs, a.profile_top)
    res["profile_records"] = len(prof_recs)

    create_topics(settings)
    try:
        print("(c) rollguard worker ...", flush=True)
        res["worker"] = worker_run(settings, warm, main_recs, timeout=300)
        print("(a) raw confluent-kafka consumer ...", flush=True)
        runs = [raw_consume(settings, total, "consume") for _ in range(a.raw_repeats)]
        runs.sort(key=lambda r: r["records_per_s"])
        res["raw"] = {**runs[len(runs) // 2], "runs_records_per_s": [round(r["records_per_s"]) for r in runs]}
        res["raw_poll"] = raw_consume(settings, total, "poll")
        print("(b) bare Faust agent ...", flush=True)
        res["bare_faust"] = bare_faust(settings, prefix, total)
    finally:
        res["deleted_topics"] = delete_prefixed_topics(settings, prefix)

    raw, bare, wk, ip = res["raw"], res["bare_faust"], res["worker"], res["in_process"]
    res["ratios"] = {
        "worker_over_raw": wk["records_per_s"] / raw["records_per_s"],
        "worker_over_bare_faust": wk["records_per_s"] / bare["records_per_s"],
        "bare_faust_over_raw": bare["records_per_s"] / raw["records_per_s"],
        "worker_over_in_process": wk["records_per_s"] / ip["records_per_s"],
    }
    rows = [
        ("(a) raw confluent-kafka `consume(5000)`, no-op", f"{raw['records_per_s']:,.0f}", "1.00",
         f"median of {a.raw_repeats}: {', '.join(f'{x:,}' for x in raw['runs_records_per_s'])}"),
        ("(a') raw confluent-kafka `poll()` per message", f"{res['raw_poll']['records_per_s']:,.0f}",
         f"{res['raw_poll']['records_per_s'] / raw['records_per_s']:.2f}", "1 run"),
        ("(b) bare Faust agent, `take_events(5000, 0.25)`, no-op", f"{bare['records_per_s']:,.0f}",
         f"{res['ratios']['bare_faust_over_raw']:.2f}", "subprocess, first batch -> last"),
        ("(c) **rollguard worker** (guards + join + fold + analyze)", f"**{wk['records_per_s']:,.0f}**",
         f"**{res['ratios']['worker_over_raw']:.2f}**",
         f"produce start -> last partial {wk['seconds_to_last_partial']:.2f} s "
         f"(lag=0 seen at {wk['seconds_to_lag0']:.2f} s: {wk['records_per_s_by_lag']:,.0f}/s)"),
        ("(d) `IngestFold.process` in-process, no Kafka", f"{ip['records_per_s']:,.0f}",
         f"{ip['records_per_s'] / raw['records_per_s']:.2f}", f"{ip['us_per_record']:.1f} µs/record"),
    ]
    table = md_table(["path (same records)", "records/s", "vs raw", "notes"], rows, "lrrl")
    ratios = md_table(["ratio", "value"], [
        ("worker / raw consumer", f"{res['ratios']['worker_over_raw']:.2f}"),
        ("worker / bare Faust", f"{res['ratios']['worker_over_bare_faust']:.2f}"),
        ("bare Faust / raw consumer", f"{res['ratios']['bare_faust_over_raw']:.2f}"),
        ("worker / in-process fold", f"{res['ratios']['worker_over_in_process']:.2f}"),
    ])
    m = res["machine"]
    print()
    print(f"### Ingest throughput per worker ({len(main_recs):,} records, seed {a.seed}; "
          f"{m['nproc']} cores {m['cpu']}, Python {m['python']})")
    print()
    print(table)
    print()
    print(ratios)
    print()
    print(f"Worker: ready {wk['startup_to_ready_s']} s after spawn (excluded); producing the records took "
          f"{wk['produce_s']} s of the run; DLQ records: {wk['dlq_records']}. Target: worker/raw >= 0.5.")
    print()
    print(f"In-process profile ({len(prof_recs):,} records, cProfile, top {a.profile_top} by cumulative time):")
    print()
    print("```")
    print(prof_text)
    print("```")
    path = write_json(a.out, res)
    print(f"\nwrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

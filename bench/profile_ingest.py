"""Per-record cost of ingest, in-process (no Kafka): ``IngestFold.process`` + a ``flush()`` every batch.

Prints µs/record for the whole step and its parts, measured side by side in one run (interleaved repeats; per
column, the best time of each chunk of records, summed, so a busy neighbour on a shared box hardly shows):

  total    the ingest agent's work: ``process`` on every record, ``flush`` every ``--batch`` records;
  decode   ``contracts.decode`` on every record;
  guards   ``SpecBook.guards(feature)``, the ``GuardItem`` and ``GuardSet.check`` on every response;
  fold     ``total`` again with decode and guards answered from tables of their precomputed results: what
           is left (segment key, join, aggregates, bottom-k sample, shadow pairing, expiry, flush).

``decode + guards + fold`` comes close to ``total`` (the look-ups' own cost is measured and subtracted; the
rest of the gap is cache effects). ``--profile`` adds a cProfile of the total (it inflates small functions:
the breakdown gives the numbers, the profile where to look).

Records: seeded ``rollguard.simulate`` traffic encoded as ``bench/ingest.py`` produces it (orjson, responses on
the pairs topic and outcomes on the outcomes topic, key = request_id). ``--traffic`` picks a ``SCENARIOS``
preset (rich text: varied lengths, JSON outputs, PII and refusals at base rates; judged with the shipped
``support-reply`` spec unless the preset has its own, e.g. ``shadow-disagreement``) or ``demo`` (the demo's
traffic: fixed answers). ``--guards budget`` adds a ``guards:`` section to the spec (the default guards plus a
latency/cost budget), as a feature with its own guard config has.

Run: .venv/bin/python bench/profile_ingest.py [--records N] [--traffic NAME] [--guards budget] [--profile]
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
import gc  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

import rollguard.pipeline as pipeline  # noqa: E402
from rollguard.contracts import ResponseEvent, decode  # noqa: E402
from rollguard.guards import Finding  # noqa: E402
from rollguard.pipeline import (  # noqa: E402
    IngestFold,
    SpecBook,
)
from rollguard.simulate import SCENARIOS, Regression, Traffic  # noqa: E402
from rollguard.spec import RolloutSpec, load_spec, parse_spec  # noqa: E402

REPO = _HERE.parent
SPEC = REPO / "rollguard" / "specs" / "support-reply.yaml"
PAIRS, OUTCOMES = "rollguard.pairs", "rollguard.outcomes"
Record = tuple[str, bytes, bytes]  # (topic, key, value)
#: ``--guards budget``: the default guards, plus per-request budgets (a feature's own ``guards:`` section)
BUDGET_GUARDS: dict[str, Any] = {"budget": {"latency_ms": 5000, "cost_usd": 0.05}}


# ------------------------------------------------------------------------------------------ inputs
def traffic(name: str, seed: int, guards: dict[str, Any] | None = None) -> tuple[Traffic, RolloutSpec]:
    """The seeded generator and the spec it is judged with (plus a ``guards:`` section if given)."""
    if name == "demo":  # rollguard/demo.py: canary escalations 3 % -> 15 % for premium users only
        tr = Traffic(seed=seed, canary_weight=0.25,
                     regressions=[Regression("escalation_rate", 0.15, {"tier": "premium"})])
        spec = load_spec(SPEC)
    else:
        sc = SCENARIOS[name]
        tr, spec = sc.traffic(seed), parse_spec(sc.spec) if sc.spec is not None else load_spec(SPEC)
    if guards is not None:
        spec = parse_spec({**spec.model_dump(mode="json", exclude_none=True), "guards": guards})
    return tr, spec


def records(tr: Traffic, responses: int) -> list[Record]:
    """What ``bench/ingest.py`` produces: responses on pairs, outcomes on outcomes, keyed by request_id."""
    return [(PAIRS if ev["schema"].startswith("rollguard.response") else OUTCOMES, ev["request_id"].encode(),
             orjson.dumps(ev)) for ev in tr.events(responses)]


# ------------------------------------------------------------------------------------------ runs
#: Records per timed chunk. Every run times each chunk of the same records separately and the report sums the
#: best time of each chunk over the repeats: a chunk takes ~2-3 ms, so most chunks of some repeat ran without a
#: neighbour preempting them, and the sum is stable on a busy box where best-of-whole-runs is not.
CHUNK = 200


def drive(fold: IngestFold, recs: Sequence[Record], batch: int, chunk: int = CHUNK) -> list[float]:
    """What the ingest agent does: process each record (offsets per topic), flush after every batch.
    Returns the seconds each ``chunk`` of records took (a flush counts in the chunk it ends)."""
    offsets = {PAIRS: 0, OUTCOMES: 0}
    process, flush = fold.process, fold.flush
    times: list[float] = []
    clock = time.perf_counter
    t = clock()
    for i, (topic, key, value) in enumerate(recs, 1):
        off = offsets[topic]
        offsets[topic] = off + 1
        process(value, topic=topic, partition=0, offset=off, key=key)
        if i % batch == 0:
            flush()
        if i % chunk == 0:
            now = clock()
            times.append(now - t)
            t = now
    flush()
    times.append(clock() - t)
    return times


def timed(items: Sequence[Any], step: Callable[[Any], Any], chunk: int = CHUNK) -> list[float]:
    """Seconds per ``chunk`` of ``items`` for ``step(item)``."""
    times: list[float] = []
    clock = time.perf_counter
    for lo in range(0, len(items), chunk):
        part = items[lo:lo + chunk]
        t = clock()
        for x in part:
            step(x)
        times.append(clock() - t)
    return times


class _Precomputed:
    """Stands in for a SpecBook whose guard sets answer from a table: ``check(event)`` -> its findings."""

    def __init__(self, book: SpecBook, findings: dict[int, list[Finding]]) -> None:
        self.get = book.get
        self._findings = findings

    def guards(self, feature: str) -> _Precomputed:
        return self

    def check(self, item: Any) -> list[Finding]:
        return self._findings[id(item)]


class Bench:
    """One record set and spec; each ``run_*`` returns seconds per chunk of records."""

    def __init__(self, recs: list[Record], spec: RolloutSpec, batch: int) -> None:
        self.recs, self.batch = recs, batch
        self.book = SpecBook({spec.feature: spec})
        self.events = {id(v): decode(v) for _, _, v in recs}
        self.responses = [ev for ev in self.events.values() if isinstance(ev, ResponseEvent)]
        item_of = self.new_fold()._guard_item
        self.findings = {id(ev): self.book.guards(ev.feature).check(item_of(ev)) for ev in self.responses}

    def new_fold(self) -> IngestFold:
        return IngestFold(self.book, window_s=60)

    def run_total(self) -> list[float]:
        return drive(self.new_fold(), self.recs, self.batch)

    def run_decode(self) -> list[float]:
        return timed([v for _, _, v in self.recs], lambda v: decode(v, max_bytes=1_048_576))

    def run_guards(self) -> list[float]:
        item_of, guards = self.new_fold()._guard_item, self.book.guards
        return timed(self.responses, lambda ev: guards(ev.feature).check(item_of(ev)))

    def run_fold(self) -> list[float]:
        """``total`` with decode and the guards answered from tables (the pipeline module's ``decode`` is
        swapped for the look-up while this runs, and the fold's guard item is the event itself)."""
        fold = self.new_fold()
        events = self.events
        fold.specs = _Precomputed(self.book, self.findings)  # type: ignore[assignment]
        fold._guard_item = lambda ev: ev  # type: ignore[assignment,method-assign,return-value]
        real = pipeline.decode
        pipeline.decode = lambda raw, **_: events[id(raw)]
        try:
            return drive(fold, self.recs, self.batch)
        finally:
            pipeline.decode = real

    def run_lookup(self) -> list[float]:
        """The tables' own cost in ``fold`` (to subtract): one decode and one guard look-up per record."""
        events = self.events
        stub = _Precomputed(self.book, self.findings)
        lookup = lambda raw, **_: events[id(raw)]  # noqa: E731 - the same lambda as in run_fold

        def step(v: bytes) -> None:
            ev = lookup(v, max_bytes=1)
            if isinstance(ev, ResponseEvent):
                stub.guards("f").check(ev)

        return timed([v for _, _, v in self.recs], step)


def best_of(runs: dict[str, Callable[[], list[float]]], repeats: int) -> dict[str, float]:
    """Interleaved repeats (every column once per round); per column, the sum over chunks of each chunk's
    best time (seconds)."""
    best: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            times = run()
            prev = best.get(name)
            best[name] = times if prev is None else [min(a, b) for a, b in zip(prev, times, strict=True)]
    return {name: sum(times) for name, times in best.items()}


# ------------------------------------------------------------------------------------------ report
def profile(bench: Bench, top: int) -> str:
    fold = bench.new_fold()
    prof = cProfile.Profile()
    prof.enable()
    drive(fold, bench.recs, bench.batch)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    start = text.find("   ncalls")
    return (text[start:] if start >= 0 else text).rstrip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--records", type=int, default=40_000, help="records (responses + outcomes), default 40k")
    ap.add_argument("--traffic", default="escalation-premium", choices=["demo", *SCENARIOS],
                    help="a SCENARIOS preset (rich text) or 'demo' (default: escalation-premium)")
    ap.add_argument("--guards", choices=["spec", "budget"], default="spec",
                    help="spec: the spec's own guards (the shipped one has none: the default set); "
                         "budget: add a guards: section (defaults + a latency/cost budget)")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--batch", type=int, default=5000, help="records per flush (the ingest agent's batch)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the total")
    ap.add_argument("--top", type=int, default=25, help="profile rows")
    a = ap.parse_args(argv)

    tr, spec = traffic(a.traffic, a.seed, BUDGET_GUARDS if a.guards == "budget" else None)
    # records per response: its outcome (outcome_share of them), and a shadow response in shadow presets
    per_response = 1 + tr.outcome_share + (1 if tr.shadow else 0)
    recs = records(tr, max(1, round(a.records / per_response)))
    bench = Bench(recs, spec, a.batch)
    n, n_resp = len(recs), len(bench.responses)
    mean_b = sum(len(v) for _, _, v in recs) / n
    print(f"profile_ingest: {n:,} records ({n_resp:,} responses, {n - n_resp:,} outcomes, mean {mean_b:.0f} B), "
          f"traffic {a.traffic!r} seed {a.seed}, spec {spec.feature} "
          f"({'its own guards: section' if spec.guards else 'no guards: section, default guards'}), "
          f"flush every {a.batch:,}, guards engine {bench.book.guards(spec.feature).engine}, "
          f"Python {platform.python_version()}")

    runs: dict[str, Callable[[], list[float]]] = {"total": bench.run_total, "decode": bench.run_decode,
                                                  "guards": bench.run_guards, "fold": bench.run_fold,
                                                  "lookup": bench.run_lookup}
    # the benches' tables (decoded events, findings) are not what a worker holds: keep them out of the collector
    gc.collect()
    gc.freeze()
    for run in runs.values():  # warm-up: first allocations, caches
        run()
    best = best_of(runs, a.repeats)
    us = {k: v / n * 1e6 for k, v in best.items()}
    fold_us = us["fold"] - us["lookup"]
    parts = us["decode"] + us["guards"] + fold_us
    print(f"\nµs/record ({a.repeats} interleaved repeats, best per {CHUNK}-record chunk)")
    print(f"  total   {us['total']:7.2f}   ({n / best['total']:,.0f} records/s)")
    print(f"  decode  {us['decode']:7.2f}")
    print(f"  guards  {us['guards']:7.2f}   ({best['guards'] / n_resp * 1e6:.2f} per response)")
    print(f"  fold    {fold_us:7.2f}   (total with decode + guards precomputed, minus {us['lookup']:.2f} "
          "for the look-ups)")
    print(f"  sum     {parts:7.2f}   (vs total: {parts - us['total']:+.2f})")
    if a.profile:
        print(f"\ncProfile of total ({n:,} records, top {a.top} by own time):\n")
        print(profile(bench, a.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

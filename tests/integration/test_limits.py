"""Backpressure and limits: a burst at 10x the normal rate and 10,000 distinct segments keep the worker's
memory bounded; the configurable limits (max event size, max text scanned, max segments per feature) are
enforced and counted where an operator sees them (Prometheus collector, the periodic ``ingest:`` log line).

The control topic is a topic: a stopped or slow subscriber holds nothing in the worker (the worker never
waits on consumers); one that starts late rebuilds the current state from the compacted log.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from rollguard.client import ControlSubscriber, EventProducer
from rollguard.contracts import decode_dlq
from rollguard.pipeline import Analyzer, IngestFold, SpecBook
from rollguard.simulate import Traffic
from rollguard.spec import load_specs
from rollguard.topics import create_topics
from tests.faults.harness import (
    SPEC,
    GroupLag,
    Keys,
    WorkerProc,
    free_port,
    fresh_settings,
    read_all,
    read_json,
    rss_kb,
    wait_until,
)

NORMAL_RATE = 400.0  # responses/s
#: allowed RSS growth over the warmed-up baseline across the burst and the 10,000 segments
MAX_GROWTH_MB = 200


def send(p: EventProducer, events: list[dict[str, Any]], rate: float | None = None) -> None:
    t0 = time.monotonic()
    n = 0
    for ev in events:
        if ev["schema"].startswith("rollguard.response"):
            assert p.send_response(ev)
            n += 1
            if rate and n % 100 == 0:
                pause = t0 + n / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # workload pacing, not synchronisation
        else:
            assert p.send_outcome(ev)
    assert p.flush(60) == 0


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("rollguard_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def distinct_segments(n: int, seed: int) -> list[dict[str, Any]]:
    evs = list(Traffic(seed=seed).events(n))
    i = 0
    for ev in evs:
        if ev["schema"].startswith("rollguard.response"):
            ev["segment"] = {**ev["segment"], "use_case": f"uc-{i}"}
            i += 1
    return evs


class RssSampler(threading.Thread):
    """Samples a worker's RSS every 0.5 s, labelled with the workload phase."""

    def __init__(self, worker: WorkerProc) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.phase = "warm-up"
        self.samples: list[tuple[str, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if self.worker.alive():
                self.samples.append((self.phase, rss_kb(self.worker.pid)))
            self.done.wait(0.5)

    def peak_mb(self, phase: str | None = None) -> int:
        return max(kb for ph, kb in self.samples if phase in (None, ph)) // 1024

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def test_burst_at_10x_keeps_memory_bounded(broker: str, tmp_path: Path) -> None:
    settings = fresh_settings(broker)
    keys = Keys()
    create_topics(settings)
    port = free_port()
    with WorkerProc(settings, keys, tmp_path, extra_env={"ROLLGUARD_METRICS_PORT": str(port)}) as worker:
        stopped_sub = ControlSubscriber(settings, verifier=keys.verifier())  # created, never polled
        lag = GroupLag(settings)
        rss = RssSampler(worker)
        rss.start()
        try:
            with EventProducer(settings) as p:
                send(p, list(Traffic(seed=1).events(4_000)), rate=NORMAL_RATE)
                wait_until(lag.drained, 120, "warm-up to drain")
                rss.phase = "normal"
                send(p, list(Traffic(seed=2).events(4_000)), rate=NORMAL_RATE)
                wait_until(lag.drained, 120, "normal traffic to drain")
                rss.phase = "burst"
                t0 = time.monotonic()
                send(p, list(Traffic(seed=3).events(40_000)), rate=10 * NORMAL_RATE)
                burst_rate = 40_000 / (time.monotonic() - t0)
                wait_until(lag.drained, 180, "the burst to drain")
                rss.phase = "after"
                wait_until(lambda: sum(1 for ph, _ in rss.samples if ph == "after") >= 4, 30, "RSS samples")
            metrics = scrape(port)
        finally:
            rss.stop()
            lag.close()
        assert worker.alive()
        stopped_sub.poll(5.0)  # the stopped subscriber simply resumes from the log
        stopped_sub.close()
    baseline = rss.peak_mb("normal")
    peaks = {ph: rss.peak_mb(ph) for ph in dict(rss.samples)}
    print(f"worker RSS MB by phase (peak): {peaks}; burst produced at {burst_rate:.0f} responses/s "
          f"({burst_rate / NORMAL_RATE:.1f}x normal); records {metrics['rollguard_ingest_records_total']:.0f}")
    assert burst_rate >= 5 * NORMAL_RATE
    assert rss.peak_mb() <= baseline + MAX_GROWTH_MB, peaks
    assert metrics["rollguard_ingest_records_total"] == 2 * (4_000 + 4_000 + 40_000)


def test_10k_distinct_segments_keep_memory_bounded(broker: str, tmp_path: Path) -> None:
    """Regression test: the per-feature checkpoint once passed 1 MB at ~10k segments and Faust's producer
    buffer took the whole worker down (MessageSizeTooLargeError)."""
    settings = fresh_settings(broker)
    keys = Keys()
    create_topics(settings)
    with WorkerProc(settings, keys, tmp_path) as worker:
        lag = GroupLag(settings)
        rss = RssSampler(worker)
        rss.start()
        try:
            with EventProducer(settings) as p:
                send(p, list(Traffic(seed=1).events(4_000)))
                wait_until(lag.drained, 120, "warm-up to drain")
                rss.phase = "segments"
                send(p, distinct_segments(10_000, seed=4))
                wait_until(lambda: lag.drained() or "Crashed reason" in worker.log_text(), 180,
                           "10,000 segments to drain (or the worker to crash)")
        finally:
            rss.stop()
            lag.close()
        log = worker.log_text()
        assert "Crashed reason" not in log, [ln for ln in log.splitlines() if "Crashed reason" in ln][:2]
        assert worker.alive()
    assert rss.peak_mb() <= rss.peak_mb("warm-up") + MAX_GROWTH_MB


def test_event_size_and_scan_limits_are_enforced_and_counted(broker: str, tmp_path: Path) -> None:
    settings = fresh_settings(broker)
    keys = Keys()
    create_topics(settings)
    port = free_port()
    env = {"ROLLGUARD_MAX_EVENT_BYTES": "20000", "ROLLGUARD_MAX_SCAN_CHARS": "1000",
           "ROLLGUARD_METRICS_PORT": str(port)}
    events = list(Traffic(seed=6).events(1_000))
    long_text = big = 0
    for ev in events:
        if ev["schema"].startswith("rollguard.response") and ev["request_id"].endswith("7"):
            ev["output"] = (ev["output"] or "x") * 20 + " " + "y" * 3000  # > 1000 chars: scan truncated
            long_text += 1
    with WorkerProc(settings, keys, tmp_path, extra_env=env) as worker:
        lag = GroupLag(settings)
        with EventProducer(settings) as p:
            send(p, events)
            for i in range(25):  # valid contract, too large for ROLLGUARD_MAX_EVENT_BYTES
                ev = dict(events[0], request_id=f"big-{i}", event_id=f"big-{i}", output="z" * 30_000)
                assert p.send_response(ev)
                big += 1
            assert p.flush(30) == 0
        wait_until(lag.drained, 120, "the worker to drain")
        lag.close()
        metrics = scrape(port)
        assert worker.alive()
    dlq = [decode_dlq(v) for _, v in read_all(settings, settings.topics.dlq) if v]
    assert len(dlq) == big and all(d.reason.startswith("record too large") for d in dlq)
    assert metrics["rollguard_ingest_dlq_total"] == big
    assert metrics["rollguard_ingest_scan_truncated_total"] == long_text
    partials = [p for p in read_json(settings, settings.topics.partials) if p["feature"] == "support-reply"]
    assert sum(e[3].get("requests", 0) for p in partials for e in p["entries"]) == 1_000
    print(f"limits: {big} records over max event bytes -> DLQ 'record too large'; {long_text} responses "
          f"scanned only to ROLLGUARD_MAX_SCAN_CHARS; metrics {metrics}")


def test_segment_cap_is_counted_and_the_overflow_bucket_is_analysable() -> None:
    """No broker: the worker's own step functions with ROLLGUARD_MAX_SEGMENTS_PER_FEATURE hit (regression test:
    the ``_overflow`` key once made ``Analyzer.apply`` raise ValueError and crash the analyze agent)."""
    specs = SpecBook(load_specs(SPEC))
    fold = IngestFold(specs, max_segments_per_feature=50)
    for i, ev in enumerate(distinct_segments(2_000, seed=7)):
        fold.process(orjson.dumps(ev), topic="pairs", partition=0, offset=i)
    assert fold.counters.segment_overflow > 0
    analyzer = Analyzer(specs)
    for partial in fold.flush():
        analyzer.apply(partial.value)
    rt = analyzer.features["support-reply"]
    assert sum(s.requests for segs in rt.stage_stats.values() for s in segs.values()) == 2_000
    assert sum(len(segs) for segs in rt.stage_stats.values()) <= 2 * 51

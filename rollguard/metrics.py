"""Prometheus metrics for the worker: what ingest counted (DLQ, orphans, limits hit) and what analysis did.

Counters live as plain ints on ``IngestCounters`` / ``FeatureRuntime`` (the pipeline stays free of a
metrics library); a collector reads them at scrape time, so the per-event path pays nothing for metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from rollguard.pipeline import Analyzer, IngestFold


class WorkerCollector(Collector):
    """Exposes ``rollguard_ingest_*`` counters and per-feature analysis gauges."""

    def __init__(self, fold: IngestFold, analyzer: Analyzer) -> None:
        self.fold = fold
        self.analyzer = analyzer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, value in asdict(self.fold.counters).items():
            if name == "outcomes_pending":
                yield GaugeMetricFamily(f"rollguard_ingest_{name}", "outcomes waiting for their response", value)
            else:
                yield CounterMetricFamily(f"rollguard_ingest_{name}", f"ingest: {name.replace('_', ' ')}", value)
        partials = CounterMetricFamily("rollguard_analysis_partials", "partials merged", labels=["feature"])
        dups = CounterMetricFamily("rollguard_analysis_duplicate_partials", "partials skipped as already merged",
                                   labels=["feature"])
        overlaps = CounterMetricFamily("rollguard_analysis_overlapping_partials",
                                       "partials re-read after a restart (bounded overcount)", labels=["feature"])
        held = GaugeMetricFamily("rollguard_rollout_scopes_held", "scopes paused or rolled back",
                                 labels=["feature", "status"])
        for feature, rt in self.analyzer.features.items():
            partials.add_metric([feature], rt.partials)
            dups.add_metric([feature], rt.duplicate_partials)
            overlaps.add_metric([feature], rt.overlapping_partials)
            for status in ("paused", "rolled_back"):
                held.add_metric([feature, status], sum(1 for s in rt.rollout.scopes.values() if s == status))
        yield from (partials, dups, overlaps, held)


def serve(fold: IngestFold, analyzer: Analyzer, port: int) -> None:
    """Register the collector and serve /metrics on ``port``."""
    from prometheus_client import start_http_server

    REGISTRY.register(WorkerCollector(fold, analyzer))
    start_http_server(port)

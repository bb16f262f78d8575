from __future__ import annotations

from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, generate_latest

from rollguard.metrics import WorkerCollector
from rollguard.pipeline import Analyzer, IngestFold, SpecBook
from rollguard.simulate import Traffic
from rollguard.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parents[3] / "rollguard" / "specs" / "support-reply.yaml")


def test_counters_are_exposed() -> None:
    specs = SpecBook({SPEC.feature: SPEC})
    fold, analyzer = IngestFold(specs), Analyzer(specs)
    for i, ev in enumerate(Traffic(seed=1).events(30)):
        fold.process(orjson.dumps(ev), topic="t", partition=0, offset=i)
    fold.process(b"junk", topic="t", partition=0, offset=99)
    for p in fold.flush():
        analyzer.apply(p.value)
    reg = CollectorRegistry()
    reg.register(WorkerCollector(fold, analyzer))
    text = generate_latest(reg).decode()
    assert "rollguard_ingest_dlq_total 1.0" in text
    assert "rollguard_ingest_responses_total 30.0" in text
    assert 'rollguard_analysis_partials_total{feature="support-reply"} 1.0' in text

"""Drift detection in the running worker on the real broker: a candidate-only drift pauses, a shared one alerts.

Needs the drift wiring (``RolloutSpec.drift`` and ``Analyzer.drift``, see the drift-monitor note): without it
the worker refuses the spec's ``drift`` section and these tests fail at the first wait.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import yaml

from rollguard.client import EventProducer
from rollguard.config import Settings
from tests.integration.harness import Keys, fresh_settings, group_lag, input_lag, read_all, running_worker, wait_until

PREMIUM = {"tier": "premium"}
N = 80_000  # responses at 20/s of event time: 4,000 s; the ramp runs from 2,000 s to 2,500 s
# Produced as fast as the producer goes, the worker sees a backlog: flushes of up to 5,000 records, so ingest's
# sample (4 rows per segment, arm and minute) is thinner than live, and the baseline's premium latency detector
# needs ~1,300 s of event time to warm up. The drift starts after that.


def drift_spec(base: Path, out: Path) -> Path:
    """The demo spec without its latency criterion (so only drift can pause on latency), no promotion during
    the test, and drift mapped to pause with a tolerance that fits the test's 50 minutes of event time."""
    data = yaml.safe_load(base.read_text())
    data["criteria"] = [c for c in data["criteria"] if c["metric"] != "latency_p95_ms"]
    data["stages"][0]["min_duration"] = "24h"
    data["drift"] = {"action": "pause", "tolerance": "2m", "quiet": "1m", "cooldown": "10m"}
    path = out / "drift-spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def ramp(events: Iterator[dict[str, Any]], arms: set[str]) -> Iterator[dict[str, Any]]:
    """Premium latency in ``arms`` rises linearly from x1 at response N/2 to x1.6 at 5N/8."""
    i = 0
    start, length = N // 2, N // 8
    for e in events:
        if e["schema"].startswith("rollguard.response"):
            i += 1
            if i >= start and e["variant"] in arms and e["segment"]["tier"] == "premium":
                e["latency_ms"] = round(e["latency_ms"] * (1 + 0.6 * min(1.0, (i - start) / length)), 2)
        yield e


def produce(settings: Settings, arms: set[str]) -> None:
    from rollguard.simulate import Traffic

    with EventProducer(settings) as p:
        for ev in ramp(Traffic(seed=3, events_per_s=20).events(N), arms):
            ok = p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
            assert ok
        assert p.flush(60) == 0 and p.failed == 0


def drift_alerts(settings: Settings) -> list[dict[str, Any]]:
    out = []
    for _, v in read_all(settings, settings.topics.alerts):
        if v:
            a = orjson.loads(v)
            if a["kind"] == "drift":
                out.append(a)
    return out


def commands(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in read_all(settings, settings.topics.control) if v]


def drained(settings: Settings) -> bool:
    t = settings.topics
    return input_lag(settings) == 0 and \
        group_lag(settings, settings.app_id, [t.partials]) == 0


def test_gradual_canary_drift_in_premium_pauses_premium(broker: str, keys: Keys, spec_path: Path,
                                                        tmp_path: Path) -> None:
    settings = fresh_settings()
    spec = drift_spec(spec_path, tmp_path)

    def regression() -> list[dict[str, Any]]:
        return [a for a in drift_alerts(settings) if a["evidence"]["classification"] == "candidate_regression"
                and a["segment"] == PREMIUM and a["evidence"]["metric"] == "latency_ms"]

    with running_worker(settings, spec, keys, tmp_path):
        produce(settings, {"canary"})
        wait_until(lambda: bool(regression()), 240, "a candidate-regression drift alert for premium")
        wait_until(lambda: any(c["action"] == "pause" and c["scope"] == PREMIUM for c in commands(settings)),
                   60, "a pause command for premium")
        wait_until(lambda: drained(settings), 240, "worker to drain its input")
    alert = regression()[0]
    assert alert["severity"] == "warn" and alert["variant"] == "canary"
    assert alert["evidence"]["canary"] > alert["evidence"]["reference"]["canary"]
    assert "input" not in alert and "output" not in alert  # never raw text
    cmds = commands(settings)
    assert [(c["action"], c["scope"]) for c in cmds] == [("pause", PREMIUM)]
    assert cmds[0]["evidence"]["classification"] == "candidate_regression"
    assert cmds[0]["issued_by"] == "drift"
    assert not [a for a in drift_alerts(settings) if a["evidence"]["classification"] == "traffic_shift"]


def test_same_drift_on_both_arms_alerts_traffic_shift_and_sends_no_command(broker: str, keys: Keys,
                                                                           spec_path: Path, tmp_path: Path) -> None:
    settings = fresh_settings()
    spec = drift_spec(spec_path, tmp_path)

    def shift() -> list[dict[str, Any]]:
        return [a for a in drift_alerts(settings) if a["evidence"]["classification"] == "traffic_shift"
                and a["segment"] == PREMIUM and a["evidence"]["metric"] == "latency_ms"]

    with running_worker(settings, spec, keys, tmp_path):
        produce(settings, {"canary", "baseline"})
        wait_until(lambda: bool(shift()), 240, "a traffic-shift drift alert for premium")
        wait_until(lambda: drained(settings), 240, "worker to drain its input")
    assert commands(settings) == []
    # a drift on both arms is a traffic shift; a narrower candidate-side echo of it is marked as explained by
    # the open episode and carries no action
    assert not [a for a in drift_alerts(settings) if a["evidence"]["classification"] == "candidate_regression"
                and a["evidence"]["metric"] == "latency_ms" and not a["evidence"].get("explained_by")
                and a["severity"] != "info"]  # an episode's recovery notice is not a regression

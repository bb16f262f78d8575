"""Issue 3 on the real broker: each kind of regression pauses or rolls back exactly its segment; a broken split
pauses; A/A traffic triggers nothing. One worker judges all cases at once, one feature per case."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml

from rollguard.client import ControlSubscriber, EventProducer
from rollguard.signing import Verifier
from rollguard.simulate import Regression, Traffic
from tests.integration.harness import Keys, fresh_settings, group_lag, input_lag, running_worker, wait_until

CASES: dict[str, tuple[Traffic, list[tuple[str, dict[str, str], str]]]] = {
    "escalation": (Traffic(seed=51, regressions=[Regression("escalation_rate", 0.12, {"tier": "premium"})]),
                   [("rollback", {"tier": "premium"}, "escalation_rate")]),
    "success": (Traffic(seed=52, regressions=[Regression("task_success_rate", 0.70, {"use_case": "billing"})]),
                [("rollback", {"use_case": "billing"}, "task_success_rate")]),
    "latency": (Traffic(seed=53, regressions=[Regression("latency", 1.6, {"geo": "eu"})]),
                [("pause", {"geo": "eu"}, "latency_p95_ms")]),
    "cost": (Traffic(seed=54, regressions=[Regression("cost", 2.0, {"tier": "pro"})]),
             [("pause", {"tier": "pro"}, "cost_per_request")]),
    "split": (Traffic(seed=55, canary_weight=0.21), [("pause", {}, "srm")]),
    "aa-1": (Traffic(seed=56), []),
    "aa-2": (Traffic(seed=57), []),
}


def test_each_regression_stops_its_segment_and_aa_stays_quiet(broker: str, keys: Keys, spec_path: Path,
                                                             tmp_path: Path) -> None:
    base = yaml.safe_load(spec_path.read_text())
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    for name, (traffic, _) in CASES.items():
        traffic.feature = f"f-{name}"
        (spec_dir / f"{name}.yaml").write_text(yaml.safe_dump({**base, "feature": traffic.feature,
                                                               "flag": f"flag-{name}"}))
    settings = fresh_settings()
    with running_worker(settings, spec_dir, keys, tmp_path):
        with EventProducer(settings) as p:
            for traffic, _ in CASES.values():
                for ev in traffic.events(30_000):
                    assert p.send_response(ev) if ev["schema"].endswith("response/v1") else p.send_outcome(ev)
            assert p.flush(60) == 0
        t = settings.topics
        wait_until(lambda: input_lag(settings) == 0
                   and group_lag(settings, settings.app_id, [t.partials]) == 0, 300, "the worker to drain")
        sub = ControlSubscriber(settings, verifier=Verifier({keys.key_id: keys.public}))
        sub.poll(3.0)
        sub.close()
    got: dict[str, list[tuple[str, dict[str, str], str]]] = {name: [] for name in CASES}
    for cmd in sorted(sub.state.latest.values(), key=lambda c: c.seq):
        got[cmd.feature.removeprefix("f-")].append((cmd.action.value, cmd.scope, cmd.evidence["metric"]))
    assert got == {name: expected for name, (_, expected) in CASES.items()}
    assert not sub.state.rejections
    assert orjson.dumps(got)  # evidence is JSON all the way

"""A leaked secret in canary traffic: a critical alert at once and, as the spec says, an immediate rollback."""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml

from rollguard.client import ControlSubscriber, EventProducer
from rollguard.signing import Verifier
from rollguard.simulate import Regression, Traffic
from tests.integration.harness import Keys, fresh_settings, read_all, running_worker


def test_leaked_secret_alerts_and_rolls_back(broker: str, keys: Keys, spec_path: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(spec_path.read_text())
    spec["on_critical_guard"] = "rollback"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    settings = fresh_settings()
    traffic = Traffic(seed=21, regressions=[Regression("leak", 1.0, {"tier": "free"}, start=1500)])
    with running_worker(settings, path, keys, tmp_path):
        with EventProducer(settings) as p:
            for ev in traffic.events(2000):
                assert p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
            assert p.flush(30) == 0
        sub = ControlSubscriber(settings, verifier=Verifier({keys.key_id: keys.public}))
        assert sub.wait_for(lambda s: any(c.action == "rollback" for c in s.latest.values()), timeout=60)
        cmd = next(c for c in sub.state.latest.values() if c.action == "rollback")
        sub.close()
    assert cmd.evidence["metric"] == "safety_failures" and cmd.evidence["canary"] >= 1
    alerts = [orjson.loads(v) for _, v in read_all(settings, settings.topics.alerts) if v]
    guard_alerts = [a for a in alerts if a["kind"] == "guard"]
    assert guard_alerts and all(a["severity"] == "critical" and a["variant"] == "canary" for a in guard_alerts)
    codes = {f["code"] for a in guard_alerts for f in a["evidence"]["findings"]}
    assert any(c.startswith("secrets.aws") for c in codes), codes
    # no raw secret anywhere in what SREs see: the leaked keys were AKIA + 16 chars
    leaked = {ev["output"].split("Use key ")[1][:20] for ev in traffic.events(2000)
              if ev["schema"].startswith("rollguard.response") and "Use key " in ev.get("output", "")}
    blob = b"".join(v or b"" for _, v in read_all(settings, settings.topics.alerts))
    blob += b"".join(v or b"" for _, v in read_all(settings, settings.topics.control))
    assert leaked and not any(k.encode() in blob for k in leaked)

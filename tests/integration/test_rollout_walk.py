"""Issue 5 end to end on the real broker: a closed loop where the traffic split is whatever an OpenFeature
client evaluates from rollguard's signed commands.

A healthy candidate walks shadow -> canary-10 -> expand (free, pro) -> full; an unhealthy one (errors for
premium users only) is rolled back for premium alone while the rest goes on; forged and replayed commands
are rejected; ``rollguard status`` shows where each rollout stands.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from typer.testing import CliRunner

from rollguard.cli import app as cli
from rollguard.client import ControlSubscriber, EventProducer
from rollguard.client.flags import FlagConfig
from rollguard.client.openfeature import RollguardProvider
from rollguard.config import Settings
from rollguard.signing import Verifier
from rollguard.streams.ingest import ingest_group_id
from tests.integration.harness import Keys, fresh_settings, group_lag, read_json, running_worker, wait_until

GOOD, BAD = "walk-good", "walk-bad"
TIERS = (("free", 0.55), ("pro", 0.30), ("premium", 0.15))
ANSWERS = ["Your refund was issued.", "Reconnect the integration under Settings.", "You can add seats in Billing."]


def spec(feature: str) -> dict[str, Any]:
    return {
        "feature": feature, "flag": f"{feature}-flag", "segment_by": ["tier"],
        "stages": [
            {"name": "shadow", "mode": "shadow", "min_requests": 600},
            {"name": "canary-10", "weight": 0.10, "min_requests": 400},
            {"name": "expand", "weight": 0.5, "min_requests": 800, "segments": {"tier": ["free", "pro"]}},
            {"name": "full", "weight": 1.0},
        ],
        "criteria": [
            {"metric": "error_rate", "max_increase": 0.05, "action": "rollback", "min_samples": 200},
            {"metric": "shadow_disagreement_rate", "max_increase": 0.2, "action": "pause", "min_samples": 200},
            {"metric": "srm", "action": "pause", "per_segment": False},
        ],
    }


class Service:
    """A fake AI feature backend: asks OpenFeature which arm serves each request, reports to rollguard."""

    def __init__(self, feature: str, producer: EventProducer, sub: ControlSubscriber, seed: int, bad: bool) -> None:
        self.feature, self.flag = feature, f"{feature}-flag"
        self.producer, self.sub = producer, sub
        self.rng = random.Random(seed)
        self.bad = bad
        self.i = 0
        self.t0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def stage(self) -> str:
        promotes = [c for c in self.sub.state.for_flag(self.flag) if c.action == "promote"]
        if not promotes:
            return "shadow"
        return max(promotes, key=lambda c: c.seq).stage or "shadow"

    def response(self, rid: str, variant: str, tier: str, mode: str) -> dict[str, Any]:
        rng = self.rng
        err_rate = 0.25 if (self.bad and variant == "canary" and tier == "premium") else 0.01
        error = rng.random() < err_rate
        return {
            "schema": "rollguard.response/v1", "event_id": str(uuid.uuid4()), "request_id": rid,
            "ts": (self.t0 + timedelta(milliseconds=10 * self.i)).isoformat(), "feature": self.feature,
            "variant": variant, "mode": mode, "segment": {"tier": tier}, "input": "help",
            "output": "" if error else ANSWERS[self.i % len(ANSWERS)],
            "latency_ms": rng.lognormvariate(math.log(500), 0.3),
            "usage": {"input_tokens": 50, "output_tokens": 20}, "cost_usd": 0.001, "error": "boom" if error else None,
        }

    def serve(self, n: int) -> None:
        client = api.get_client()
        for _ in range(n):
            self.i += 1
            rid = f"{self.feature}-{self.i}"
            r, acc, tier = self.rng.random(), 0.0, "premium"
            for name, w in TIERS:
                acc += w
                if r < acc:
                    tier = name
                    break
            variant = client.get_string_value(self.flag, "baseline", EvaluationContext(rid, {"tier": tier}))
            shadow = self.stage() == "shadow"
            assert self.producer.send_response(self.response(rid, "baseline" if shadow else variant, tier, "live"))
            if shadow:
                assert self.producer.send_response(self.response(rid, "canary", tier, "shadow"))


def caught_up(settings: Settings) -> bool:
    t = settings.topics
    return (group_lag(settings, ingest_group_id(settings), [t.pairs]) == 0
            and group_lag(settings, settings.app_id, [t.partials]) == 0)


def share(flag: str, tier: str) -> float:
    client = api.get_client()
    users = [f"u{i}" for i in range(1000)]
    return sum(client.get_string_value(flag, "baseline", EvaluationContext(u, {"tier": tier})) == "canary"
               for u in users) / len(users)


def test_rollout_walks_to_full_or_stops_per_segment(broker: str, keys: Keys, tmp_path: Path) -> None:
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    for f in (GOOD, BAD):
        (spec_dir / f"{f}.yaml").write_text(yaml.safe_dump(spec(f)))
    settings = fresh_settings()
    changed: list[str] = []
    with running_worker(settings, spec_dir, keys, tmp_path):
        sub = ControlSubscriber(settings, verifier=Verifier({keys.key_id: keys.public}))
        flags = {f"{f}-flag": FlagConfig("baseline", "canary", default_weight=0.0) for f in (GOOD, BAD)}
        provider = RollguardProvider(sub, flags)
        api.set_provider_and_wait(provider)
        api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED,
                        lambda d: changed.extend(d.flags_changed or []))
        sub.start()
        seen: dict[str, list[tuple[str, float, float]]] = {GOOD: [], BAD: []}
        with EventProducer(settings) as producer:
            good = Service(GOOD, producer, sub, seed=1, bad=False)
            bad = Service(BAD, producer, sub, seed=2, bad=True)
            for _ in range(200):
                for svc in (good, bad):
                    svc.serve(150)
                producer.flush(10)
                # a flag service sees decisions as they come: let the worker catch up before more traffic
                wait_until(lambda: caught_up(settings), 60, "the worker")
                for svc in (good, bad):
                    st = svc.stage()
                    if not seen[svc.feature] or seen[svc.feature][-1][0] != st:
                        seen[svc.feature].append((st, share(svc.flag, "free"), share(svc.flag, "premium")))
                if good.stage() == "full" and bad.stage() == "full":
                    break
        wait_until(lambda: all(c.flag for c in sub.state.latest.values()), 5, "commands")
        # forged (altered after signing) and replayed commands are rejected and change nothing
        real = max(sub.state.for_flag(f"{GOOD}-flag"), key=lambda c: c.seq)
        forged = real.model_copy(update={"weight": 0.0, "action": "rollback", "seq": real.seq + 100})
        wire = Producer(settings.librdkafka())
        wire.produce(settings.topics.control, key=forged.control_key.encode(), value=forged.to_bytes())
        wire.produce(settings.topics.control, key=real.control_key.encode(), value=real.to_bytes())
        assert wire.flush(10) == 0
        wait_until(lambda: len(sub.state.rejections) >= 2, 30, "the forged and replayed commands")
        sub.close()
        status = CliRunner().invoke(cli, ["status", "--bootstrap", settings.bootstrap, "--prefix",
                                          settings.topics.prefix, "--app-id", settings.app_id],
                                    env={"COLUMNS": "140"})
    api.shutdown()
    reasons = [r.reason for r in sub.state.rejections]
    assert any("forged" in r for r in reasons) and any("replayed" in r for r in reasons)
    log = sorted((c for c in read_json(settings, settings.topics.control) if c.get("key_id")),
                 key=lambda c: (c["flag"], c["seq"]))
    first_seen: dict[str, dict[str, Any]] = {}
    for c in log:  # the forged copy has another seq; the replayed one repeats an id
        if c["seq"] != forged.seq:
            first_seen.setdefault(c["command_id"], c)
    good_cmds = [(c["action"], c["scope"], c["stage"]) for c in first_seen.values() if c["flag"] == f"{GOOD}-flag"]
    assert good_cmds == [("promote", {}, "canary-10"), ("promote", {"tier": "free"}, "expand"),
                         ("promote", {"tier": "pro"}, "expand"), ("promote", {}, "full")], status.output
    stages = [s for s, _, _ in seen[GOOD]]
    assert stages == ["shadow", "canary-10", "expand", "full"], seen[GOOD]
    shares = {s: (free, prem) for s, free, prem in seen[GOOD]}
    assert shares["shadow"] == (0.0, 0.0) and shares["full"] == (1.0, 1.0)
    assert 0.05 < shares["canary-10"][0] < 0.15 and 0.4 < shares["expand"][0] < 0.6
    assert 0.05 < shares["expand"][1] < 0.15  # premium was not part of the expansion
    bad_cmds = [(c["action"], c["scope"]) for c in log if c["flag"] == f"{BAD}-flag"]
    assert ("rollback", {"tier": "premium"}) in bad_cmds
    assert all(a != "rollback" or s == {"tier": "premium"} for a, s in bad_cmds)
    assert share(f"{BAD}-flag", "premium") == 0.0
    assert f"{GOOD}-flag" in changed and f"{BAD}-flag" in changed
    assert status.exit_code == 0, status.output
    assert GOOD in status.output and "full" in status.output and "rolled_back" in status.output
    (Path(__file__).resolve().parents[2] / "build").mkdir(exist_ok=True)
    (Path(__file__).resolve().parents[2] / "build" / "status-screen.txt").write_text(status.output)

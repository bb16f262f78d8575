"""The rollout state machine, driven by traffic that follows the commands (a closed loop, no Kafka)."""

from __future__ import annotations

import orjson

from rollguard.contracts import ControlRequest
from rollguard.pipeline import Analyzer, IngestFold, SpecBook
from rollguard.simulate import Regression, Traffic
from rollguard.spec import RolloutSpec, parse_spec


def spec(**over: object) -> RolloutSpec:
    body: dict[str, object] = {
        "feature": "support-reply", "flag": "support-reply-model", "segment_by": ["tier"],
        "stages": [
            {"name": "shadow", "mode": "shadow", "min_requests": 1500},
            {"name": "canary-10", "weight": 0.10, "min_requests": 600},
            {"name": "expand", "weight": 0.5, "min_requests": 1500, "segments": {"tier": ["free", "pro"]}},
            {"name": "full", "weight": 1.0},
        ],
        "criteria": [
            {"metric": "error_rate", "max_increase": 0.05, "action": "rollback", "min_samples": 300},
            {"metric": "shadow_disagreement_rate", "max_increase": 0.2, "action": "pause", "min_samples": 300},
            {"metric": "srm", "action": "pause", "per_segment": False},
        ],
    }
    body.update(over)
    return parse_spec(body)


class Loop:
    """Feeds traffic whose split follows the commands the analysis publishes, like a flag service would."""

    def __init__(self, sp: RolloutSpec, traffic: Traffic) -> None:
        self.specs = SpecBook({sp.feature: sp})
        self.fold, self.an = IngestFold(self.specs), Analyzer(self.specs)
        self.traffic = traffic
        self.traffic.shadow = sp.stages[0].mode == "shadow"
        self.traffic.canary_weight = sp.stages[0].weight or 0.0
        self.commands: list[dict[str, object]] = []
        self.offset = 0

    def apply(self, emits: list) -> None:  # type: ignore[type-arg]
        for e in emits:
            if e.kind != "control":
                continue
            c = orjson.loads(e.value)
            self.commands.append(c)
            if c["action"] == "promote" and not c["scope"]:
                stage = next(s for s in self.specs.get("support-reply").stages if s.name == c["stage"])  # type: ignore[union-attr]
                self.traffic.shadow = stage.mode == "shadow"
                self.traffic.canary_weight = c["weight"]

    def run(self, n: int) -> list[tuple[str, dict[str, str], str | None]]:
        for ev in self.traffic.events(n):
            self.fold.process(orjson.dumps(ev), topic="t", partition=0, offset=self.offset)
            self.offset += 1
            if self.offset % 400 == 0:
                self.flush()
        self.flush()
        return [(str(c["action"]), c["scope"], c.get("stage")) for c in self.commands]  # type: ignore[misc]

    def flush(self) -> None:
        for p in self.fold.flush():
            self.apply(self.an.apply(p.value))

    def request(self, action: str, scope: dict[str, str] | None = None) -> None:
        req = ControlRequest(feature="support-reply", action=action, scope=scope or {}, reason="test",  # type: ignore[arg-type]
                             requested_by="sre")
        self.apply(self.an.apply(req.to_bytes()))


def test_healthy_candidate_walks_every_stage_to_full() -> None:
    loop = Loop(spec(), Traffic(seed=1))
    cmds = loop.run(40_000)
    assert [(a, s, st) for a, s, st in cmds] == [
        ("promote", {}, "canary-10"),
        ("promote", {"tier": "free"}, "expand"), ("promote", {"tier": "pro"}, "expand"),
        ("promote", {}, "full"),
    ]
    state = loop.an.features["support-reply"].rollout
    assert state.stage == "full" and [h["to"] for h in state.history] == ["canary-10", "expand", "full"]


def test_segment_regression_stops_the_rollout_for_that_segment_only() -> None:
    loop = Loop(spec(), Traffic(seed=2, regressions=[Regression("error_rate", 0.2, {"tier": "premium"})]))
    cmds = loop.run(30_000)
    assert ("rollback", {"tier": "premium"}, "canary-10") in cmds
    assert all(a != "rollback" or s == {"tier": "premium"} for a, s, _ in cmds)


def test_manual_pause_is_respected_until_resumed() -> None:
    loop = Loop(spec(), Traffic(seed=3))
    loop.request("pause")
    assert loop.run(8_000) == [("pause", {}, "shadow")]
    state = loop.an.features["support-reply"].rollout
    assert state.held_by["all"] == "manual:sre" and any("paused" in p for p in state.gates["pending"])
    loop.request("resume")
    cmds = loop.run(6_000)
    assert cmds[1][0] == "resume" and cmds[2] == ("promote", {}, "canary-10")


def test_kill_switch_and_manual_promote() -> None:
    loop = Loop(spec(), Traffic(seed=4))
    loop.request("promote")
    loop.request("rollback")
    assert [(a, s) for a, s, _ in loop.run(4_000)] == [("promote", {}), ("rollback", {})]
    assert loop.an.features["support-reply"].rollout.weight(()) == 0.0


def test_too_little_traffic_reverts_after_max_duration() -> None:
    sp = spec(stages=[{"name": "canary-1", "weight": 0.01, "min_requests": 5000, "max_duration": "60s"},
                      {"name": "full", "weight": 1.0}])
    loop = Loop(sp, Traffic(seed=5))
    cmds = loop.run(20_000)  # 100 s of event time at 200 events/s; ~200 canary requests
    assert cmds == [("rollback", {}, "canary-1")]
    assert loop.commands[0]["evidence"]["metric"] == "min_requests"  # type: ignore[index]


def test_state_survives_a_restart_mid_rollout() -> None:
    loop = Loop(spec(), Traffic(seed=6))
    loop.run(12_000)
    before = list(loop.commands)
    blob = loop.an.features["support-reply"].to_bytes()
    fresh = Analyzer(loop.specs)
    fresh.restore("support-reply", blob)
    loop.an = fresh
    loop.run(30_000)
    after = loop.commands[len(before):]
    issued = [c["command_id"] for c in loop.commands]
    seqs = [c["seq"] for c in loop.commands]
    assert len(issued) == len(set(issued)) and seqs == sorted(seqs)
    assert before and after and loop.an.features["support-reply"].rollout.stage == "full"

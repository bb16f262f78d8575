"""The whole path on a real broker: events in, signed segment-scoped rollback out."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson

from rollguard.client import ControlSubscriber, EventProducer
from rollguard.config import Settings
from rollguard.pipeline import SpecBook
from rollguard.replay import replay
from rollguard.signing import Verifier
from rollguard.simulate import Regression, Traffic
from rollguard.spec import load_specs
from tests.integration.harness import Keys, fresh_settings, group_lag, input_lag, read_all, running_worker, wait_until

PREMIUM = {"tier": "premium"}


def produce(settings: Settings, traffic: Traffic, n: int) -> int:
    with EventProducer(settings) as p:
        for ev in traffic.events(n):
            ok = p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
            assert ok
        assert p.flush(30) == 0
        assert p.failed == 0 and p.dropped == 0
        return p.sent


def drained(settings: Settings) -> bool:
    """The worker consumed every input record and the analysis every partial."""
    t = settings.topics
    lag_in = input_lag(settings)
    lag_p = group_lag(settings, settings.app_id, [t.partials])
    return lag_in == 0 and lag_p == 0


def control_records(settings: Settings) -> list[dict[str, object]]:
    return [orjson.loads(v) for _, v in read_all(settings, settings.topics.control) if v]


def test_premium_regression_rolls_back_premium_only(broker: str, keys: Keys, spec_path: Path,
                                                    tmp_path: Path) -> None:
    settings = fresh_settings()
    traffic = Traffic(seed=11, regressions=[Regression("escalation_rate", 0.15, PREMIUM)])
    with running_worker(settings, spec_path, keys, tmp_path):
        produce(settings, traffic, 30_000)
        sub = ControlSubscriber(settings, verifier=Verifier({keys.key_id: keys.public}))
        assert sub.wait_for(lambda s: any(c.scope == PREMIUM and c.action == "rollback"
                                          for c in s.latest.values()), timeout=120), "no premium rollback"
        wait_until(lambda: drained(settings), 120, "worker to drain its input")
        sub.poll(1.0)
        cmds = list(sub.state.latest.values())
        sub.close()
    assert [(c.action.value, c.scope) for c in cmds] == [("rollback", PREMIUM)]
    cmd = cmds[0]
    assert cmd.signature and cmd.key_id == keys.key_id
    assert cmd.evidence["metric"] == "escalation_rate"
    assert cmd.evidence["canary"] > cmd.evidence["baseline"]
    alerts = [orjson.loads(v) for _, v in read_all(settings, settings.topics.alerts) if v]
    assert any(a["command_id"] == cmd.command_id for a in alerts)
    decisions = [orjson.loads(v) for _, v in read_all(settings, settings.topics.decisions) if v]
    assert [d["decision"] for d in decisions] == ["rollback"]
    # `rollguard replay` over the same events reaches the same decision
    offline = replay((orjson.dumps(e) for e in traffic.events(30_000)), SpecBook(load_specs(spec_path)))
    assert [(d["decision"], d["scope"], d["criterion"]) for d in offline.decoded("decisions")] == \
        [(d["decision"], d["scope"], d["criterion"]) for d in decisions]


def test_malformed_records_go_to_dlq_and_valid_traffic_still_counts(broker: str, keys: Keys, spec_path: Path,
                                                                   tmp_path: Path) -> None:
    settings = fresh_settings()
    kinds = {
        "not JSON": lambda i: b"<html>oops %d" % i,
        "unsupported schema": lambda i: orjson.dumps({"schema": "rollguard.response/v9", "i": i}),
        "Field required": lambda i: orjson.dumps({"schema": "rollguard.response/v1", "event_id": f"e{i}"}),
        "valid number": lambda i: orjson.dumps({
            "schema": "rollguard.outcome/v1", "event_id": f"o{i}", "request_id": f"r{i}",
            "ts": "2026-11-26T10:00:00Z", "feature": "support-reply", "feedback": "very good"}),
        "invalid UTF-8": lambda i: b'{"schema": "rollguard.response/v1", "output": "\xff\xfe' + str(i).encode() + b'"}',
    }
    n_each = 200
    valid = 4000
    with running_worker(settings, spec_path, keys, tmp_path):
        with EventProducer(settings) as p:
            traffic = Traffic(seed=5).events(valid)
            bad = [(name, make) for name, make in kinds.items()]
            i = 0
            for ev in traffic:
                if ev["schema"].startswith("rollguard.response"):
                    assert p.send_response(ev)
                    name, make = bad[i % len(bad)]
                    if i < n_each * len(bad):
                        p.send_raw(settings.topics.pairs if i % 2 else settings.topics.outcomes,
                                   f"bad-{i}".encode(), make(i))
                    i += 1
                else:
                    assert p.send_outcome(ev)
            assert p.flush(30) == 0
        wait_until(lambda: drained(settings), 120, "worker to drain its input")
        dlq = [orjson.loads(v) for _, v in read_all(settings, settings.topics.dlq) if v]
        partials = [orjson.loads(v) for _, v in read_all(settings, settings.topics.partials) if v]
    assert len(dlq) == n_each * len(kinds)
    for name in kinds:
        hits = [d for d in dlq if name in d["reason"]]
        assert len(hits) == n_each, (name, len(hits), {d["reason"] for d in dlq})
    rec = dlq[0]
    assert rec["topic"] in (settings.topics.pairs, settings.topics.outcomes) and rec["offset"] >= 0
    assert rec["value"] and rec["size"] > 0
    responses = sum(e[3].get("requests", 0) for p in partials for e in p["entries"])
    outcomes = sum(e[3].get("outcomes", 0) for p in partials for e in p["entries"])
    assert responses == valid
    assert outcomes == valid


def test_restarted_worker_does_not_reissue_commands(broker: str, keys: Keys, spec_path: Path,
                                                    tmp_path: Path) -> None:
    settings = fresh_settings()
    traffic = Traffic(seed=13, regressions=[Regression("escalation_rate", 0.2, PREMIUM)])
    events = list(traffic.events(40_000))
    first, second = events[: len(events) // 2], events[len(events) // 2:]

    def send(batch: list[dict[str, object]]) -> None:
        with EventProducer(settings) as p:
            for ev in batch:
                assert (p.send_response(ev) if str(ev["schema"]).startswith("rollguard.response")
                        else p.send_outcome(ev))
            assert p.flush(30) == 0

    with running_worker(settings, spec_path, keys, tmp_path):
        send(first)
        wait_until(lambda: any(c.get("scope") == PREMIUM for c in control_records(settings)), 120,
                   "the first rollback")
        wait_until(lambda: drained(settings), 120, "worker to drain")
    before = control_records(settings)
    assert len(before) == 1
    # restart (graceful), more of the same regression: the decision is already in force
    with running_worker(settings, spec_path, keys, tmp_path):
        send(second[: len(second) // 2])
        wait_until(lambda: drained(settings), 120, "restarted worker to drain")
    # and once more after SIGKILL mid-stream
    with running_worker(settings, spec_path, keys, tmp_path) as proc:
        send(second[len(second) // 2:])
        proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        proc.wait()  # type: ignore[attr-defined]
    with running_worker(settings, spec_path, keys, tmp_path):
        wait_until(lambda: drained(settings), 120, "worker to recover after SIGKILL")
    after = control_records(settings)
    sub_state = ControlSubscriber(settings, verifier=Verifier({keys.key_id: keys.public}))
    sub_state.wait_for(lambda s: s.accepted >= 1, timeout=10)
    sub_state.poll(1.0)
    effective = sub_state.state.accepted
    sub_state.close()
    assert effective == 1
    assert {c["command_id"] for c in after} == {before[0]["command_id"]}
    assert len(after) == 1

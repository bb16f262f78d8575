"""Operators on the real broker: a spec published with `spec apply` is picked up by a running worker; manual
pause and the kill switch go through the same signed, sequenced path as the policy's own decisions."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from rollguard.cli import app as cli
from rollguard.client import ControlSubscriber, EventProducer
from rollguard.signing import Verifier
from rollguard.simulate import Traffic
from rollguard.status import read_states
from tests.integration.harness import Keys, fresh_settings, input_lag, running_worker, wait_until


def test_spec_apply_manual_pause_and_kill_switch(broker: str, keys: Keys, spec_path: Path, tmp_path: Path) -> None:
    settings = fresh_settings()
    common = ["--bootstrap", settings.bootstrap, "--prefix", settings.topics.prefix]
    runner = CliRunner()
    empty = tmp_path / "no-specs"
    empty.mkdir()
    with running_worker(settings, empty, keys, tmp_path):
        applied = runner.invoke(cli, ["spec", "apply", str(spec_path), *common])
        assert applied.exit_code == 0, applied.output

        def adopted() -> bool:
            rt = read_states(settings, timeout=3).get("support-reply")
            return rt is not None and bool(rt.rollout.spec_version)

        # the follower picks the spec up within a second; the analysis records it with the next partial, so
        # keep traffic flowing until the checkpoint shows it (as it would in production), a chunk at a time once
        # the worker has read the previous one (a worker still starting must not find the whole workload done)
        events = Traffic(seed=61).events(40_000)
        with EventProducer(settings) as p:
            for _ in range(100):
                for _, ev in zip(range(400), events, strict=False):
                    assert p.send_response(ev) if ev["schema"].endswith("response/v1") else p.send_outcome(ev)
                p.flush(10)
                wait_until(lambda: input_lag(settings) == 0, 60, "the worker to read the traffic so far")
                if adopted():
                    break
        assert adopted(), "the worker never adopted the applied spec"
        sub = ControlSubscriber(settings, verifier=Verifier({keys.key_id: keys.public}))
        paused = runner.invoke(cli, ["pause", "support-reply", "--segment", "tier=pro", "--reason", "looks odd",
                                     "--by", "alice", *common])
        assert paused.exit_code == 0, paused.output
        assert sub.wait_for(lambda s: any(c.action == "pause" for c in s.latest.values()), timeout=60)
        killed = runner.invoke(cli, ["kill-switch", "--reason", "drill", "--by", "bob", "--app-id", settings.app_id,
                                     *common])
        assert killed.exit_code == 0, killed.output
        assert sub.wait_for(lambda s: any(c.action == "rollback" and not c.scope for c in s.latest.values()),
                            timeout=60)
        sub.close()
    cmds = sorted(sub.state.latest.values(), key=lambda c: c.seq)
    assert [(c.action.value, c.scope, c.issued_by) for c in cmds] == [
        ("pause", {"tier": "pro"}, "manual:alice"), ("rollback", {}, "manual:bob")]
    assert cmds[0].weight == 0.25  # frozen at the stage weight in force
    assert "drill" in cmds[1].reason and not sub.state.rejections
    state = read_states(settings)["support-reply"].rollout
    assert state.scopes == {"tier=pro": "paused", "all": "rolled_back"}

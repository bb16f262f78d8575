"""FlagdWriter: a valid flagd document whose targeting serves what FlagRollout says, written atomically."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from rollguard.client.flagd import FLAGD_SCHEMA, FlagdWriter, compile_branches, flagd_flag, write_atomic
from rollguard.client.flags import FlagConfig, FlagRollout
from rollguard.contracts import Command
from tests.unit.client.helpers import FLAG, PREMIUM, FakeSubscriber, cmd
from tests.unit.client.jsonlogic import murmur3_32, resolve

CFG = FlagConfig("baseline", "canary", default_weight=0.0)


def rollout(*commands: Command) -> FlagRollout:
    r = FlagRollout(FLAG, CFG)
    for c in commands:
        r = r.apply(c)
    return r


def doc_for(r: FlagRollout) -> dict[str, Any]:
    return {"$schema": FLAGD_SCHEMA, "flags": {FLAG: flagd_flag(r)}}


def flagd_share(doc: dict[str, Any], n: int = 4000, **attrs: str) -> float:
    return sum(resolve(doc, FLAG, {"targetingKey": f"user-{i}", **attrs}) == "canary" for i in range(n)) / n


def test_murmur3_reference_vectors() -> None:
    assert murmur3_32(b"") == 0
    assert murmur3_32(b"hello") == 0x248BFA47
    assert murmur3_32(b"Hello, world!") == 0xC0363E43


def test_document_structure_and_global_split() -> None:
    doc = doc_for(rollout(cmd(1, "set_weight", {}, 0.25)))
    flag = doc["flags"][FLAG]
    assert flag["state"] == "ENABLED" and flag["defaultVariant"] == "baseline"
    assert flag["variants"] == {"baseline": "baseline", "canary": "canary"}
    assert flag["targeting"] == {"fractional": [["canary", 25], ["baseline", 75]]}
    json.dumps(doc)  # plain JSON
    assert flagd_share(doc) == pytest.approx(0.25, abs=0.03)


def test_premium_rollback_becomes_an_if_branch() -> None:
    doc = doc_for(rollout(cmd(1, "set_weight", {}, 0.5), cmd(2, "rollback", PREMIUM, 0.0)))
    assert doc["flags"][FLAG]["targeting"] == {"if": [
        {"==": [{"var": "tier"}, "premium"]}, "baseline",
        {"fractional": [["canary", 50], ["baseline", 50]]},
    ]}
    assert flagd_share(doc, tier="premium") == 0.0
    assert flagd_share(doc, tier="free") == pytest.approx(0.5, abs=0.03)
    assert flagd_share(doc) == pytest.approx(0.5, abs=0.03)


def test_constant_targeting_and_sub_percent_weights() -> None:
    assert flagd_flag(rollout())["targeting"] == {"if": [True, "baseline"]}
    assert flagd_flag(rollout(cmd(1, "set_weight", {}, 1.0)))["targeting"] == {"if": [True, "canary"]}
    assert flagd_flag(rollout(cmd(1, "set_weight", {}, 0.0025)))["targeting"] == {
        "fractional": [["canary", 25], ["baseline", 9975]]}


STATES = {
    "scoped": [cmd(1, "set_weight", {}, 0.05), cmd(2, "pause", PREMIUM),
               cmd(3, "rollback", {"geo": "eu"}, 0.0), cmd(4, "promote", {}, 0.25),
               cmd(5, "set_weight", {"tier": "free", "geo": "us"}, 0.75)],
    "nested": [cmd(1, "set_weight", {}, 0.1), cmd(2, "set_weight", PREMIUM, 0.2),
               cmd(3, "set_weight", {"tier": "premium", "geo": "eu"}, 1.0),
               cmd(4, "rollback", {"use_case": "billing"}, 0.0)],
    "kill": [cmd(1, "set_weight", {}, 0.3), cmd(2, "set_weight", PREMIUM, 1.0), cmd(3, "rollback", {}, 0.0)],
}


@pytest.mark.parametrize("name", sorted(STATES))
def test_compiled_chain_agrees_with_the_rollout_on_every_segment(name: str) -> None:
    r = rollout(*STATES[name])
    doc = doc_for(r)
    branches, _ = compile_branches(r)
    tiers, geos, uses = ["premium", "free", None], ["eu", "us", "apac", None], ["billing", None]
    for tier, geo, use in itertools.product(tiers, geos, uses):
        seg = {k: v for k, v in (("tier", tier), ("geo", geo), ("use_case", use)) if v is not None}
        w = r.weight_for(seg)
        # whole-segment checks: weight 0/1 must be exact under flagd, splits proportional
        got = flagd_share(doc, 1500, **seg)
        if w in (0.0, 1.0):
            assert got == w, (seg, w, got)
        else:
            assert got == pytest.approx(w, abs=0.05), (seg, w, got)
    assert len(branches) <= 8, branches


def test_kill_switch_compiles_to_constant_baseline() -> None:
    assert flagd_flag(rollout(*STATES["kill"]))["targeting"] == {"if": [True, "baseline"]}


def test_writer_follows_the_subscriber_and_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    sub = FakeSubscriber()
    sub.deliver(cmd(1, "set_weight", {}, 0.5))
    writer = FlagdWriter(path, {FLAG: CFG}, sub)  # type: ignore[arg-type]
    first = json.loads(path.read_text())
    assert first["$schema"] == FLAGD_SCHEMA
    assert first["flags"][FLAG]["targeting"] == {"fractional": [["canary", 50], ["baseline", 50]]}
    inode = path.stat().st_ino
    sub.deliver(cmd(2, "rollback", PREMIUM, 0.0))
    second = json.loads(path.read_text())
    assert second["flags"][FLAG]["targeting"]["if"][:2] == [{"==": [{"var": "tier"}, "premium"]}, "baseline"]
    assert path.stat().st_ino != inode, "replaced (rename), not rewritten in place"
    assert writer.writes == 2
    assert not writer.write(), "unchanged state is not rewritten"
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temp files left behind"
    writer.close()
    sub.deliver(cmd(3, "set_weight", {}, 1.0))
    assert json.loads(path.read_text()) == second, "closed writers stop following"


def test_writer_on_command_for_bare_state(tmp_path: Path) -> None:
    writer = FlagdWriter(tmp_path / "f.json", {FLAG: CFG})
    assert writer.on_command(cmd(1, "set_weight", {}, 1.0))
    assert not writer.on_command(cmd(1, "set_weight", {}, 1.0))
    written = json.loads((tmp_path / "f.json").read_text())
    assert written["flags"][FLAG]["targeting"] == {"if": [True, "canary"]}


def test_write_failure_is_kept_not_raised_into_the_subscriber(tmp_path: Path) -> None:
    sub = FakeSubscriber()
    path = tmp_path / "f.json"
    writer = FlagdWriter(path, {FLAG: CFG}, sub)  # type: ignore[arg-type]
    path.unlink()
    path.mkdir()  # os.replace onto a non-empty directory fails, whoever runs the test
    (path / "occupied").write_text("x")
    sub.deliver(cmd(1, "set_weight", {}, 1.0))
    assert isinstance(writer.last_error, OSError)
    assert sub.state.latest, "the subscriber still accepted the command"
    (path / "occupied").unlink()
    path.rmdir()
    sub.deliver(cmd(2, "set_weight", {}, 0.5))
    assert writer.last_error is None and writer.writes == 2 and path.is_file()


def test_write_atomic_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "dir-not-file"
    target.mkdir()
    (target / "x").write_text("occupied")
    with pytest.raises(OSError):
        write_atomic(target, b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-not-file"]

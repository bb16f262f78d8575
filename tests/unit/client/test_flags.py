"""FlagRollout semantics: scopes, holds, specificity, kill switch, and sticky bucketing."""

from __future__ import annotations

import hashlib

import pytest

from rollguard.client.flags import FlagConfig, FlagRollout, RolloutBook, bucket
from rollguard.contracts import Command
from tests.unit.client.helpers import FLAG, PREMIUM, FakeSubscriber, cmd

FREE = {"tier": "free"}
PREMIUM_EU = {"tier": "premium", "geo": "eu"}
CFG = FlagConfig("baseline", "canary", default_weight=0.05)


def rollout(*commands: Command, cfg: FlagConfig = CFG) -> FlagRollout:
    r = FlagRollout(FLAG, cfg)
    for c in commands:
        r = r.apply(c)
    return r


def test_default_weight_until_a_global_stage_weight_arrives() -> None:
    r = rollout()
    assert r.weight_for(PREMIUM) == 0.05 and r.resolve({}).rule == "default" and r.resolve({}).command is None
    r = r.apply(cmd(1, "set_weight", {}, 0.25))
    assert r.weight_for(PREMIUM) == r.weight_for({}) == 0.25
    r = r.apply(cmd(2, "promote", {}, 0.5))
    assert r.weight_for(FREE) == 0.5 and r.resolve(FREE).rule == "promote"


def test_weightless_set_weight_or_promote_changes_nothing() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.25), cmd(2, "promote", PREMIUM))
    assert r.weight_for(PREMIUM) == 0.25


def test_scoped_rollback_only_hits_its_segment() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.3), cmd(2, "rollback", PREMIUM, 0.0))
    assert r.weight_for(PREMIUM) == 0.0 and r.weight_for(PREMIUM_EU) == 0.0
    assert r.weight_for(FREE) == 0.3 and r.weight_for({}) == 0.3
    decided_by = r.resolve(PREMIUM).command
    assert decided_by is not None and decided_by.seq == 2


def test_pause_freezes_the_weight_in_force_and_resume_lifts_it() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.05), cmd(2, "pause", PREMIUM), cmd(3, "promote", {}, 0.25))
    assert r.weight_for(PREMIUM) == 0.05, "a later stage must not move a paused segment"
    assert r.weight_for(FREE) == 0.25
    assert r.resolve(PREMIUM).rule == "pause"
    r = r.apply(cmd(4, "resume", PREMIUM))
    assert r.weight_for(PREMIUM) == 0.25, "resumed: back to the stage weight"


def test_pause_with_a_weight_freezes_at_that_weight() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.25), cmd(2, "pause", PREMIUM, 0.1), cmd(3, "promote", {}, 0.5))
    assert r.weight_for(PREMIUM) == 0.1


def test_weightless_pause_keeps_the_scope_own_weight_it_replaced() -> None:
    # the pause replaces the premium set_weight on the same control key, yet freezes its value
    r = rollout(cmd(1, "set_weight", {}, 0.05), cmd(2, "set_weight", PREMIUM, 0.3), cmd(3, "pause", PREMIUM),
                cmd(4, "promote", {}, 0.5))
    assert r.weight_for(PREMIUM) == 0.3
    r = r.apply(cmd(5, "resume", PREMIUM))
    assert r.weight_for(PREMIUM) == 0.3, "resume restores the scope's own weight from before the pause"


def test_global_pause_and_resume_restore_the_stage_weight() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.1), cmd(2, "pause", {}), cmd(3, "resume", {}))
    assert r.weight_for({}) == 0.1 and r.weight_for(FREE) == 0.1


def test_resume_lifts_a_rollback_and_a_resume_with_weight_sets_it() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.2), cmd(2, "set_weight", PREMIUM, 0.4), cmd(3, "pause", PREMIUM),
                cmd(4, "rollback", PREMIUM, 0.0))
    assert r.weight_for(PREMIUM) == 0.0
    resumed = r.apply(cmd(5, "resume", PREMIUM))
    assert resumed.weight_for(PREMIUM) == 0.4, "resume lifts every hold on the scope"
    assert r.apply(cmd(5, "resume", PREMIUM, 0.15)).weight_for(PREMIUM) == 0.15


def test_resume_without_a_hold_is_transparent() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.2), cmd(2, "resume", PREMIUM))
    assert r.weight_for(PREMIUM) == 0.2


def test_most_specific_scope_wins() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.1), cmd(2, "set_weight", PREMIUM, 0.2),
                cmd(3, "set_weight", PREMIUM_EU, 0.5))
    assert r.weight_for(PREMIUM_EU) == 0.5
    assert r.weight_for({"tier": "premium", "geo": "us"}) == 0.2
    assert r.weight_for({"tier": "free", "geo": "eu"}) == 0.1
    assert r.weight_for({"geo": "eu"}) == 0.1, "a partial segment only matches scopes it fully covers"


def test_rollback_beats_pause_on_equally_specific_scopes_in_either_order() -> None:
    eu = {"geo": "eu"}
    a = rollout(cmd(1, "set_weight", {}, 0.3), cmd(2, "rollback", PREMIUM, 0.0), cmd(3, "pause", eu))
    b = rollout(cmd(1, "set_weight", {}, 0.3), cmd(2, "pause", eu), cmd(3, "rollback", PREMIUM, 0.0))
    for r in (a, b):
        assert r.weight_for(PREMIUM_EU) == 0.0
        assert r.weight_for({"tier": "free", "geo": "eu"}) == 0.3  # paused at 0.3


def test_newer_coarser_rollback_beats_older_finer_weight_but_not_a_newer_one() -> None:
    older_finer = rollout(cmd(1, "set_weight", PREMIUM_EU, 0.5), cmd(2, "rollback", PREMIUM, 0.0))
    assert older_finer.weight_for(PREMIUM_EU) == 0.0
    newer_finer = rollout(cmd(1, "rollback", PREMIUM, 0.0), cmd(2, "set_weight", PREMIUM_EU, 0.5))
    assert newer_finer.weight_for(PREMIUM_EU) == 0.5
    assert newer_finer.weight_for({"tier": "premium", "geo": "us"}) == 0.0


def test_global_rollback_is_a_kill_switch_until_replaced() -> None:
    r = rollout(cmd(1, "set_weight", {}, 0.3), cmd(2, "set_weight", PREMIUM, 1.0),
                cmd(3, "rollback", {}, 0.0), cmd(4, "set_weight", PREMIUM_EU, 1.0))
    for seg in ({}, PREMIUM, PREMIUM_EU, FREE):
        assert r.weight_for(seg) == 0.0
        assert r.resolve(seg).rule == "kill_switch"
    assert all(r.variant_for(f"u{i}", PREMIUM_EU) == "baseline" for i in range(200))
    lifted = r.apply(cmd(5, "resume", {}))
    assert lifted.weight_for({}) == 0.3
    assert lifted.weight_for(PREMIUM) == 1.0 and lifted.weight_for(PREMIUM_EU) == 1.0


def test_apply_is_immutable_and_ignores_stale_and_foreign_commands() -> None:
    r1 = rollout(cmd(2, "set_weight", {}, 0.3))
    r2 = r1.apply(cmd(3, "rollback", PREMIUM, 0.0))
    assert r1.weight_for(PREMIUM) == 0.3 and r2.weight_for(PREMIUM) == 0.0
    assert r2.apply(cmd(1, "set_weight", {}, 1.0)) is r2
    assert r2.apply(cmd(9, "set_weight", {}, 1.0, flag="other")) is r2
    assert r2.last_command is not None and r2.last_command.seq == 3


def test_from_commands_matches_incremental_apply() -> None:
    cmds = [cmd(1, "set_weight", {}, 0.05), cmd(2, "pause", PREMIUM), cmd(3, "rollback", {"geo": "eu"}, 0.0),
            cmd(4, "promote", {}, 0.25), cmd(5, "set_weight", {"tier": "free"}, 0.5)]
    incremental = rollout(*cmds)
    rebuilt = FlagRollout.from_commands(FLAG, CFG, reversed(cmds))
    for seg in ({}, PREMIUM, PREMIUM_EU, FREE, {"geo": "eu"}, {"tier": "free", "geo": "eu"}):
        assert rebuilt.weight_for(seg) == incremental.weight_for(seg), seg
    assert rebuilt.scopes() == incremental.scopes()


def test_bucket_is_the_documented_sha1_prefix() -> None:
    digest = hashlib.sha1(b"support-reply-model:user-42").digest()
    assert bucket(FLAG, "user-42") == int.from_bytes(digest[:8], "big") / 2**64
    assert 0.0 <= bucket(FLAG, "user-42") < 1.0


def test_bucketing_is_sticky_monotone_and_proportional() -> None:
    keys = [f"user-{i}" for i in range(10_000)]
    at = {w: rollout(cmd(1, "set_weight", {}, w)) for w in (0.05, 0.3, 0.5)}
    first = [at[0.3].variant_for(k, FREE) for k in keys]
    assert first == [at[0.3].variant_for(k, FREE) for k in keys], "same user, same arm"
    for w, r in at.items():
        share = sum(r.serves_candidate(k, FREE) for k in keys) / len(keys)
        assert share == pytest.approx(w, abs=0.02), (w, share)
    in5 = {k for k in keys if at[0.05].serves_candidate(k, FREE)}
    in30 = {k for k in keys if at[0.3].serves_candidate(k, FREE)}
    assert in5 <= in30, "widening a rollout never moves a candidate user back to baseline"
    other = FlagRollout("other-flag", CFG).apply(cmd(1, "set_weight", {}, 0.3, flag="other-flag"))
    in_other = {k for k in keys if other.serves_candidate(k, FREE)}
    assert len(in30 & in_other) / len(keys) == pytest.approx(0.09, abs=0.02), "flags bucket independently"


def test_weights_zero_and_one_need_no_bucketing() -> None:
    assert rollout(cmd(1, "set_weight", {}, 1.0)).variant_for("", {}) == "canary"
    assert rollout(cmd(1, "set_weight", {}, 0.0)).variant_for("", {}) == "baseline"


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        FlagConfig(default_weight=1.5)
    with pytest.raises(ValueError):
        FlagConfig("same", "same")


def test_book_seeds_from_accepted_state_hooks_and_chains_the_previous_callback() -> None:
    sub = FakeSubscriber()
    seen_by_app: list[int] = []
    sub.on_change = lambda c: seen_by_app.append(c.seq)
    sub.deliver(cmd(1, "set_weight", {}, 0.3))
    changes: list[tuple[float, int]] = []
    book = RolloutBook({FLAG: CFG}, lambda r, c: changes.append((r.weight_for(PREMIUM), c.seq)))
    book.bind(sub)  # type: ignore[arg-type]
    assert changes == [(0.3, 1)], "seeded from what the subscriber had already accepted"
    sub.deliver(cmd(2, "rollback", PREMIUM, 0.0))
    sub.deliver(cmd(1, "set_weight", {}, 0.9))  # stale: the subscriber rejects it, nothing changes
    sub.deliver(cmd(3, "set_weight", {}, 0.5, flag="unconfigured"))
    assert changes == [(0.3, 1), (0.0, 2)]
    assert seen_by_app == [1, 2, 3], "the application's own callback still runs"
    book.unbind()
    assert sub.on_change is not None and sub.on_change(cmd(4, "promote", {}, 1.0, flag="x")) is None
    assert seen_by_app[-1] == 4 and len(changes) == 2


def test_book_survives_a_failing_listener() -> None:
    def boom(r: FlagRollout, c: Command) -> None:
        raise RuntimeError("listener bug")

    book = RolloutBook({FLAG: CFG}, boom)
    assert book.apply(cmd(1, "set_weight", {}, 0.3)) is not None
    assert book.get(FLAG) is not None and book.get(FLAG).weight_for({}) == 0.3  # type: ignore[union-attr]


def test_promotion_for_everyone_supersedes_an_expansions_segment_weights() -> None:
    from rollguard.client.flags import FlagConfig, FlagRollout
    from rollguard.contracts import Command

    def cmd(seq: int, action: str, scope: dict[str, str], weight: float) -> Command:
        return Command(command_id=f"c{seq}", seq=seq, flag="f", feature="x", action=action, variant="canary",
                       scope=scope, weight=weight, reason="t")

    r = FlagRollout("f", FlagConfig("baseline", "canary", 0.0))
    for c in (cmd(1, "promote", {}, 0.1), cmd(2, "promote", {"tier": "free"}, 0.5),
              cmd(3, "rollback", {"tier": "premium"}, 0.0)):
        r = r.apply(c)
    assert r.weight_for({"tier": "free"}) == 0.5 and r.weight_for({"tier": "pro"}) == 0.1
    r = r.apply(cmd(4, "promote", {}, 1.0))
    assert r.weight_for({"tier": "free"}) == 1.0 and r.weight_for({"tier": "pro"}) == 1.0
    assert r.weight_for({"tier": "premium"}) == 0.0  # holds stay

"""Two workers and a rebalance: partitions move between worker processes mid-stream; tables recover from
their changelogs; the books match the single-worker ground truth."""

from __future__ import annotations

from pathlib import Path

from rollguard.simulate import Traffic
from rollguard.topics import create_topics
from tests.faults.harness import (
    REGRESSION,
    GroupLag,
    Keys,
    PacedProducer,
    WorkerProc,
    expected_commands,
    fresh_settings,
    group_members,
    overcount_within_bounds,
    settle_and_keep_books,
    wait_until,
)

RESPONSES = 30_000


def test_second_worker_joins_then_first_leaves(broker: str, tmp_path: Path) -> None:
    settings = fresh_settings(broker)
    keys = Keys()
    traffic = Traffic(seed=21, regressions=[REGRESSION])
    events = list(traffic.events(RESPONSES))
    expected = expected_commands(events)
    assert expected == [("rollback", {"tier": "premium"})]
    create_topics(settings)
    lag = GroupLag(settings)
    a = WorkerProc(settings, keys, tmp_path, name="a")
    b = WorkerProc(settings, keys, tmp_path, name="b")
    producer = PacedProducer(settings, events, rate=800.0)
    try:
        a.start()
        wait_until(lambda: len(group_members(settings)) == 1, 60, "worker a to join")
        producer.start()
        wait_until(lambda: producer.responses >= RESPONSES // 3, 120, "a third of the workload")
        b.start()
        wait_until(lambda: sorted(len(m) for m in group_members(settings)) == [2, 2], 60,
                   "the input partitions to split 2 + 2 between a and b")
        wait_until(lambda: producer.responses >= 2 * RESPONSES // 3, 120, "two thirds of the workload")
        a.stop()  # graceful: its partitions (and the analysis table partition, if it had it) move to b
        wait_until(lambda: [len(m) for m in group_members(settings)] == [4], 60, "b to own every partition")
        producer.join(300)
        assert producer.error is None, producer.error
        run = settle_and_keep_books(settings, events, keys, traffic.feature, lag, expected)
        assert b.alive(), "worker b died"
    finally:
        a.stop()
        b.stop()
        lag.close()
    print(run.line())
    req, out = run.books["requests"], run.books["outcomes"]
    assert req["lost"] == 0, run.line()
    assert out["lost"] == 0, run.line()
    # records folded by the old owner after its last commit are read again by the new one: the overcount is
    # bounded by (and measured as) the re-read ranges visible in the partials' source offsets
    assert overcount_within_bounds(req["duplicated"], out["duplicated"], run.reread_responses, run.reread_outcomes,
                                   RESPONSES), run.line()
    assert run.remerge_matches, "the checkpointed state differs from the partials re-merged offline"
    assert run.seen == run.expected and run.accepted == len(expected), run.line()

"""The outcome join must survive a restart or a hand-over (no broker: the worker's own step functions).

In production an outcome arrives minutes or hours after its response. When the worker restarts (deploy,
crash, rebalance) its ``IngestFold`` starts empty, the responses before the committed offset are not read
again, and every outcome that arrives afterwards finds no response to join: it waits as pending and is
finally orphaned. The crash harness does not see this because its outcomes follow their responses within
milliseconds; this test spaces them the way production does.
"""

from __future__ import annotations

import orjson

from rollguard.pipeline import Analyzer, IngestFold, SpecBook
from rollguard.simulate import Traffic
from rollguard.spec import load_specs
from tests.faults.harness import SPEC


def test_outcomes_after_a_restart_still_join() -> None:
    specs = SpecBook(load_specs(SPEC))
    events = list(Traffic(seed=2).events(500))
    responses = [e for e in events if e["schema"].startswith("rollguard.response")]
    outcomes = [e for e in events if e["schema"].startswith("rollguard.outcome")]
    analyzer = Analyzer(specs)
    before = IngestFold(specs)
    for i, ev in enumerate(responses):
        before.process(orjson.dumps(ev), topic="pairs", partition=0, offset=i)
    for p in before.flush():  # delivered, then the offsets are committed
        analyzer.apply(p.value)
    after = IngestFold(specs)  # the restarted worker (or the partition's new owner)
    # at start-up the runtime (streams.recovery.recall_responses) replays the recent pairs below the committed
    # offset into the join, without counting them again
    for ev in responses:
        assert after.recall(orjson.dumps(ev))
    for i, ev in enumerate(outcomes):
        after.process(orjson.dumps(ev), topic="outcomes", partition=0, offset=i)
    for p in after.flush():
        analyzer.apply(p.value)
    rt = analyzer.features["support-reply"]
    joined = sum(s.outcomes for segs in rt.stage_stats.values() for s in segs.values())
    assert joined == len(outcomes), (f"{joined} of {len(outcomes)} outcomes counted; "
                                     f"{after.counters.outcomes_pending} pending with no response to join")
    requests = sum(s.requests for segs in rt.stage_stats.values() for s in segs.values())
    assert requests == len(responses)  # recalled responses are not counted twice


def test_without_recall_the_outcomes_would_be_orphaned() -> None:
    """The failure the recall prevents (kept so a regression in the runtime hook is obvious)."""
    specs = SpecBook(load_specs(SPEC))
    events = list(Traffic(seed=3).events(50))
    after = IngestFold(specs)
    for i, ev in enumerate(e for e in events if e["schema"].startswith("rollguard.outcome")):
        after.process(orjson.dumps(ev), topic="outcomes", partition=0, offset=i)
    assert after.counters.outcomes_pending == 50 and after.counters.outcomes_joined == 0

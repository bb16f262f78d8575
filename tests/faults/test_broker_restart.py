"""Broker restart: a private broker is stopped and started again mid-stream; the producer, the worker and a
subscriber carry on without operator action, and the books show nothing lost."""

from __future__ import annotations

import time
from pathlib import Path

from rollguard.client import ControlSubscriber
from rollguard.simulate import Traffic
from rollguard.topics import create_topics
from tests.faults.harness import (
    REGRESSION,
    GroupLag,
    Keys,
    OwnBroker,
    PacedProducer,
    WorkerProc,
    expected_commands,
    fresh_settings,
    overcount_within_bounds,
    settle_and_keep_books,
    wait_until,
)

RESPONSES = 30_000
DOWN_S = 8.0  # how long the broker stays down (workload, not synchronisation)


def test_broker_bounce_mid_stream(tmp_path: Path) -> None:
    with OwnBroker() as kafka:
        settings = fresh_settings(kafka.bootstrap)
        keys = Keys()
        traffic = Traffic(seed=31, regressions=[REGRESSION])
        events = list(traffic.events(RESPONSES))
        expected = expected_commands(events)
        create_topics(settings)
        accepted: list[str] = []
        sub = ControlSubscriber(settings, verifier=keys.verifier(), on_change=lambda c: accepted.append(c.command_id))
        sub.start()
        lag = GroupLag(settings)
        worker = WorkerProc(settings, keys, tmp_path)
        producer = PacedProducer(settings, events, rate=1000.0)
        try:
            worker.start()
            producer.start()
            wait_until(lambda: producer.responses >= RESPONSES // 3 and lag.committed([settings.topics.pairs]) > 0,
                       120, "a third of the workload, consumed")
            kafka.stop()
            t_down = time.monotonic()
            at_stop = producer.responses
            time.sleep(DOWN_S)  # the outage itself: clients keep running against a dead broker
            kafka.start()
            outage = time.monotonic() - t_down
            producer.join(300)
            assert producer.error is None, producer.error
            assert worker.alive(), "the worker exited during the outage:\n" + worker.log_text()[-3000:]
            run = settle_and_keep_books(settings, events, keys, traffic.feature, lag, expected)
            assert sub.wait_for(lambda s: s.accepted >= len(expected), 60)
            assert worker.alive(), "the worker exited after the outage"
        finally:
            worker.stop()
            lag.close()
            sub.close()
        stats = producer.producer
        assert stats is not None
        print(f"broker down {outage:.1f}s at {at_stop} responses; producer sent {stats.sent}, delivered "
              f"{stats.delivered}, failed {stats.failed}, dropped {stats.dropped}, back-offs {producer.refused}; "
              f"{run.line()}; live subscriber accepted {len(accepted)}")
    assert stats.failed == 0 and stats.delivered == len(events)
    req, out = run.books["requests"], run.books["outcomes"]
    assert req["lost"] == 0 and out["lost"] == 0, run.line()
    assert overcount_within_bounds(req["duplicated"], out["duplicated"], run.reread_responses, run.reread_outcomes,
                                   RESPONSES), run.line()
    assert run.remerge_matches
    assert run.seen == run.expected and run.accepted == len(expected) and len(accepted) == len(expected)

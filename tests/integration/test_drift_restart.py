"""Drift detectors survive a SIGKILL of the worker: no new warm-up, the drift after the restart is still caught.

Two workers on the real broker read the same stream (the gradual premium canary latency ramp of
``test_drift_live``), fed in two parts. The first part (1,800 s of event time) warms the detectors up; once a
``drift-state`` checkpoint with warmed-up premium latency detectors is in the changelog and the part is drained,
one worker is SIGKILLed (whole process group, no shutdown hook) and started again; the other runs on. The
second part carries the ramp, which starts 200 s of event time after the restart: far less than the ~1,300 s a
fresh warm-up needs under a backlog, so only restored state can see it.

Asserted: the restarted worker's first checkpoint continues the last one before the kill (same references, at
least as many updates), the candidate-regression alert it raises carries the pre-kill references, the pause
command arrives exactly once, and its detection delay is no worse than the uninterrupted worker's (both are
printed; run with ``-s`` to see them).
"""

from __future__ import annotations

import math
import pickle
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from rollguard.client import EventProducer
from rollguard.config import Settings
from rollguard.simulate import Traffic
from rollguard.topics import create_topics
from tests.faults.harness import GroupLag, Keys, WorkerProc, fresh_settings, read_all, wait_until
from tests.integration.test_drift_live import PREMIUM, N, drift_spec, ramp

FEATURE = "support-reply"
SCOPE = (("tier", "premium"),)
#: responses in the first part: 1,800 s of event time at 20/s; the ramp starts at response N/2 (2,000 s)
SPLIT = 36_000
RATE = 20  # responses per event-second (Traffic(events_per_s=20) in test_drift_live)
#: checkpoint often, so one with warmed-up detectors lands while the first part is still being analysed
ENV = {"ROLLGUARD_DRIFT_CHECKPOINT_S": "1"}


def stream() -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """The test_drift_live stream (canary-only ramp), cut after response SPLIT; and the ramp's event time."""
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    responses = 0
    ramp_t0 = math.nan
    for ev in ramp(Traffic(seed=3, events_per_s=RATE).events(N), {"canary"}):
        if ev["schema"].startswith("rollguard.response"):
            responses += 1
            if responses == N // 2 + 1:  # ramp() counts from 1: response number N/2 is the first one scaled
                ramp_t0 = _epoch(ev["ts"])
        (first if responses <= SPLIT else second).append(ev)
    assert not math.isnan(ramp_t0)
    return first, second, ramp_t0


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()


def produce(settings: Settings, events: list[dict[str, Any]]) -> None:
    with EventProducer(settings) as p:
        for ev in events:
            ok = p.send_response(ev) if ev["schema"].startswith("rollguard.response") else p.send_outcome(ev)
            assert ok
        assert p.flush(60) == 0 and p.failed == 0


# ------------------------------------------------------------------------------------------- drift checkpoints


def changelog(settings: Settings) -> str:
    return f"{settings.app_id}-drift-state-changelog"


def end_offsets(settings: Settings) -> dict[int, int]:
    c = Consumer(settings.librdkafka(**{"group.id": f"drift-ends-{uuid.uuid4().hex}"}))
    try:
        md = c.list_topics(changelog(settings), timeout=10)
        return {p: c.get_watermark_offsets(TopicPartition(changelog(settings), p), timeout=10)[1]
                for p in md.topics[changelog(settings)].partitions}
    finally:
        c.close()


def checkpoints(settings: Settings, start: dict[int, int] | None = None,
                stop: dict[int, int] | None = None) -> list[tuple[int, int, dict[str, Any]]]:
    """(partition, offset, feature states) of every drift checkpoint of FEATURE in [start, stop), in order."""
    topic = changelog(settings)
    ends = end_offsets(settings) if stop is None else stop
    begin = start or {}
    todo = {p for p, e in ends.items() if e > begin.get(p, 0)}
    if not todo:
        return []
    c = Consumer(settings.librdkafka(**{"group.id": f"drift-read-{uuid.uuid4().hex}", "enable.auto.commit": False,
                                         "auto.offset.reset": "earliest"}))
    out: list[tuple[int, int, dict[str, Any]]] = []
    try:
        c.assign([TopicPartition(topic, p, begin.get(p, 0)) for p in sorted(todo)])
        deadline = time.monotonic() + 30
        while todo and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            p, off = m.partition(), m.offset()
            if off < ends[p] and m.key() == FEATURE.encode() and m.value():
                out.append((p, off, pickle.loads(m.value())))  # our own checkpoint (trusted)
            if off + 1 >= ends[p]:
                todo.discard(p)
        assert not todo, f"could not read {topic} to its end"
    finally:
        c.close()
    return out


@dataclass
class Premium:
    """What the premium latency detectors of one checkpoint know."""

    base_n: int  # updates of the baseline's detector
    base_warm: int  # of them, warm-up values (the reference is frozen at LogScaleShift.warmup)
    warmup: int
    base_ref: tuple[float, float] | None
    cand_n: int
    cand_ref: tuple[float, float] | None
    cand_settled: bool  # the canary's own location (DriftConfig.location_warmup rows) is settled
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def warm(self) -> bool:
        return self.base_ref is not None and self.base_warm >= self.warmup and self.cand_settled


def premium(state: dict[str, Any]) -> Premium | None:
    fs = state.get(FEATURE)
    if fs is None:
        return None
    base, cand = fs.tracks.get((SCOPE, "baseline")), fs.tracks.get((SCOPE, "canary"))
    if base is None or cand is None:
        return None
    bd, cd = base.bank.detectors["latency_ms"], cand.bank.detectors["latency_ms"]
    return Premium(base_n=bd.n, base_warm=bd._w[0] if bd.reference is None else bd.warmup, warmup=bd.warmup,
                   base_ref=bd.reference, cand_n=cd.n, cand_ref=cd.reference,
                   cand_settled="latency_ms" in cand.ref_done)


def last_premium(settings: Settings, stop: dict[int, int] | None = None) -> Premium | None:
    cps = checkpoints(settings, stop=stop)
    return premium(cps[-1][2]) if cps else None


# ------------------------------------------------------------------------------------------- alerts, commands


def regressions(settings: Settings) -> list[dict[str, Any]]:
    out = []
    for _, v in read_all(settings, settings.topics.alerts):
        a = orjson.loads(v) if v else None
        if a and a["kind"] == "drift" and a["evidence"]["classification"] == "candidate_regression" \
                and a["segment"] == PREMIUM and a["evidence"]["metric"] == "latency_ms" \
                and a["evidence"]["phase"] == "alert":
            out.append(a)
    return out


def commands(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(v) for _, v in read_all(settings, settings.topics.control) if v]


@dataclass
class Run:
    settings: Settings
    worker: WorkerProc
    lag: GroupLag


def start(tmp_path: Path, spec: Path, keys: Keys, name: str) -> Run:
    settings = fresh_settings()
    create_topics(settings)
    worker = WorkerProc(settings, keys, tmp_path, spec=spec, extra_env=ENV, name=name).start()
    return Run(settings, worker, GroupLag(settings))


def warmed_and_drained(run: Run) -> bool:
    assert run.worker.alive(), run.worker.log_text()[-3000:]
    if not run.lag.drained():
        return False
    p = last_premium(run.settings)
    return p is not None and p.warm


def detected(run: Run) -> bool:
    assert run.worker.alive(), run.worker.log_text()[-3000:]
    return bool(regressions(run.settings))



def delay(alert: dict[str, Any], ramp_t0: float) -> tuple[float, float]:
    """Detection delay after the ramp began: event-seconds to the alert, and to the detector's onset."""
    ev = alert["evidence"]
    return ev["at"] - ramp_t0, ev["onset"]["canary"] - ramp_t0


def test_kill_and_restart_mid_stream_keeps_warm_detectors(broker: str, spec_path: Path, tmp_path: Path) -> None:
    t_start = time.monotonic()
    spec = drift_spec(spec_path, tmp_path)
    first, second, ramp_t0 = stream()
    keys = Keys()
    steady = start(tmp_path, spec, keys, "steady")  # runs through: the reference for the detection delay
    killed = start(tmp_path, spec, keys, "killed")
    try:
        for run in (steady, killed):
            produce(run.settings, first)
        for run in (steady, killed):
            wait_until(lambda r=run: warmed_and_drained(r), 150,
                       f"{run.worker.name}: the first part drained, a warmed-up drift checkpoint")
        assert not regressions(killed.settings) and not commands(killed.settings)

        killed.worker.kill()  # SIGKILL to the process group: nothing is flushed or checkpointed on the way out
        cut = end_offsets(killed.settings)  # everything from here on was written by the restarted worker
        before = last_premium(killed.settings, stop=cut)
        assert before is not None and before.warm
        t_kill = time.monotonic()
        killed.worker.start()

        for run in (steady, killed):
            produce(run.settings, second)
        for run in (steady, killed):
            wait_until(lambda r=run: detected(r), 150,
                       f"{run.worker.name}: a candidate-regression drift alert for premium")
        for run in (steady, killed):
            wait_until(lambda r=run: any(c["action"] == "pause" and c["scope"] == PREMIUM
                                         for c in commands(r.settings)), 60, "a pause command")
        t_detected = time.monotonic()
        for run in (steady, killed):
            wait_until(run.lag.drained, 120, f"{run.worker.name} to drain its input")
        after_all = checkpoints(killed.settings, start=cut)
    finally:
        for run in (steady, killed):
            run.worker.stop()
            run.lag.close()

    # no new warm-up: the restarted worker's first checkpoint continues the last one before the kill
    assert after_all, "the restarted worker wrote no drift checkpoint"
    after = premium(after_all[0][2])
    assert after is not None
    assert after.base_ref == before.base_ref and after.cand_ref == before.cand_ref
    assert after.cand_settled and after.base_n >= before.base_n and after.cand_n >= before.cand_n

    # no lost detection: the regression is caught on the pre-kill references, the pause is issued once
    alert = regressions(killed.settings)[0]
    assert before.base_ref is not None and before.cand_ref is not None
    ref = alert["evidence"]["reference"]
    assert math.isclose(ref["baseline"], math.exp(before.base_ref[0]), rel_tol=1e-6)
    assert math.isclose(ref["canary"], math.exp(before.cand_ref[0]), rel_tol=1e-6)
    assert alert["evidence"]["at"] >= ramp_t0
    cmds = commands(killed.settings)
    assert [(c["action"], c["scope"]) for c in cmds] == [("pause", PREMIUM)]
    assert cmds[0]["evidence"]["classification"] == "candidate_regression"

    # ... and no later than without the kill
    d_kill, onset_kill = delay(alert, ramp_t0)
    d_steady, onset_steady = delay(regressions(steady.settings)[0], ramp_t0)
    print(f"\nwarm-up before the kill: baseline premium latency n={before.base_n} (warm-up {before.base_warm}/"
          f"{before.warmup}), canary n={before.cand_n}; first checkpoint after the restart: baseline "
          f"n={after.base_n}, canary n={after.cand_n}, references unchanged")
    print(f"detection delay after the ramp began (event-s / responses): steady {d_steady:.0f} s / "
          f"{d_steady * RATE:.0f} (onset {onset_steady:.0f} s), killed+restarted {d_kill:.0f} s / "
          f"{d_kill * RATE:.0f} (onset {onset_kill:.0f} s)")
    print(f"wall: restart to detection {t_detected - t_kill:.1f} s, test {time.monotonic() - t_start:.1f} s")
    # The detector's onset falls inside the 500 s ramp, as for a warm detector. The delay to the alert varies
    # between runs with the flush boundaries of the backlog: uninterrupted runs measured 391 s and 610 s (onsets
    # 201 s and 383 s), restarted runs 397 s and 402 s. So the bound is loose: five minutes of event time.
    assert onset_kill <= N // 8 / RATE, onset_kill
    assert d_kill <= d_steady + 300, (d_kill, d_steady)



def test_rebalance_and_clean_stop_checkpoint_the_detectors(broker: str, spec_path: Path, tmp_path: Path) -> None:
    """With the schedule out of the way (1 h), only the revocation and shutdown hooks write warm checkpoints."""
    spec = drift_spec(spec_path, tmp_path)
    first, second, _t0 = stream()
    settings = fresh_settings()
    create_topics(settings)
    keys = Keys()
    env = {"ROLLGUARD_DRIFT_CHECKPOINT_S": "3600"}
    a = WorkerProc(settings, keys, tmp_path, spec=spec, extra_env=env, name="a").start()
    b = WorkerProc(settings, keys, tmp_path, spec=spec, extra_env=env, name="b")
    lag = GroupLag(settings)
    try:
        produce(settings, first)
        wait_until(lambda: a.alive() and lag.drained(), 150, "worker a to drain the first part")
        cold = checkpoints(settings)
        assert len(cold) == 1  # the scheduled one, after a's first batch
        p0 = premium(cold[0][2])
        assert p0 is None or not p0.warm

        cut = end_offsets(settings)
        b.start()  # joins the group: every partition of a is revoked, a checkpoints the features it holds
        wait_until(lambda: bool(checkpoints(settings, start=cut)), 60, "a checkpoint on revocation")
        p1 = premium(checkpoints(settings, start=cut)[0][2])
        assert p1 is not None and p1.warm, p1
        assert "checkpointed on revocation" in a.log_text()

        b.stop()  # a takes every partition back; it holds nothing unsaved, so nothing is written
        produce(settings, second[:2000])  # before the ramp; the first batch is checkpointed (the feature came back)
        wait_until(lambda: a.alive() and lag.drained(), 60, "worker a to drain the slice")
        cut = end_offsets(settings)
        a.stop()  # SIGTERM: a clean stop checkpoints what a holds
        after = checkpoints(settings, start=cut)
    finally:
        a.stop()
        b.stop()
        lag.close()
    assert "checkpointed on shutdown" in a.log_text()
    assert len(after) == 1
    p2 = premium(after[0][2])
    assert p2 is not None and p2.base_ref == p1.base_ref and p2.base_n > p1.base_n
    print(f"\ncold scheduled checkpoint: {p0}\non revocation: baseline n={p1.base_n}, canary n={p1.cand_n}; "
          f"on shutdown: baseline n={p2.base_n}, canary n={p2.cand_n}")

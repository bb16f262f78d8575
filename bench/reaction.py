"""Reaction time on the real broker: decisive event produced -> signed command accepted by a subscriber.

One worker (``python -m rollguard.cli worker``, a subprocess) runs a spec directory of K copies of
rollguard/specs/support-reply.yaml (features ``rt-0..rt-K-1``, each with its own flag, plus ``rt-bg`` for
background traffic), all with ``on_critical_guard: rollback``. Every ``rt-i`` first gets a little A/A traffic
(both arms must exist before anything is judged), then A/A traffic keeps flowing on ``rt-bg`` while trial i,
at a recorded moment (after a seeded random gap, so trials land at random phases of the 250 ms ingest batch),
produces a burst of 12 canary responses in tier=premium for ``rt-i`` whose output leaks an AWS access key id
(12 because the analysis re-tests a view only after its candidate count grew by 2 % + 10, and that throttle
also gates the hard safety limit: a single leaked key in a segment with history yields no command until ~10
more canary responses arrive there).
Reaction = the verifying ``ControlSubscriber``'s monotonic receive time of the rollback for flag ``rt-i-model``
minus the produce time. From the records' CreateTime the time is split into
produce -> critical guard alert (ingest batch), -> command (partial + analyze), -> subscriber.

Run: .venv/bin/python bench/reaction.py [--quick] [--trials K] [--seed S]   (writes bench/results/reaction.json)
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if not __package__:  # run as a script: bench/ must not shadow stdlib modules (bench/statistics.py)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402
import yaml  # noqa: E402

from bench.kafka_bench import (  # noqa: E402
    BOOTSTRAP,
    REPO,
    SPEC,
    GroupWatch,
    cleanup_proc,
    delete_prefixed_topics,
    encode_events,
    fresh_prefix,
    machine,
    md_table,
    percentile,
    produce_all,
    producer,
    read_topic,
    settings_for,
    spawn_worker,
    write_json,
)

KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def write_specs(directory: Path, features: list[str]) -> None:
    base = yaml.safe_load(SPEC.read_text())
    for f in features:
        spec = {**base, "feature": f, "flag": f"{f}-model", "on_critical_guard": "rollback"}
        (directory / f"{f}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


class Background(threading.Thread):
    """A/A traffic (responses + outcomes) on one feature at a steady rate until stopped."""

    def __init__(self, settings: Any, feature: str, seed: int, rate: float) -> None:
        super().__init__(name="bench-aa-traffic", daemon=True)
        from rollguard.simulate import Traffic

        self.settings = settings
        self.gen = Traffic(feature=feature, seed=seed).events(10**9)
        self.rate = rate
        self.stop_ev = threading.Event()
        self.sent = 0

    def run(self) -> None:
        prod = producer(self.settings)
        t0 = time.monotonic()
        while not self.stop_ev.is_set():
            due = int((time.monotonic() - t0) * self.rate) - self.sent
            if due > 0:
                batch: list[dict[str, Any]] = []
                while len(batch) < 2 * due:  # a response and its outcome per due response
                    batch.append(next(self.gen))
                produce_all(prod, encode_events(batch, self.settings), flush=False)
                self.sent += due
                prod.poll(0)
            time.sleep(0.02)
        prod.flush(10)


def decisive(feature: str, trial: int, burst: int, rng: random.Random) -> list[dict[str, Any]]:
    """Canary responses in tier=premium whose output leaks an AWS access key id (critical guard)."""
    from rollguard.simulate import Traffic

    tmpl = next(Traffic(feature=feature, seed=trial).events(1))
    start = Traffic().start + timedelta(seconds=600)
    out = []
    for j in range(burst):
        key = "AKIA" + "".join(rng.choice(KEY_ALPHABET) for _ in range(16))
        out.append({**tmpl, "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "request_id": f"decisive-{trial}-{j}", "ts": (start + timedelta(milliseconds=j)).isoformat(),
                    "variant": "canary", "model": "m-2", "segment": {**tmpl["segment"], "tier": "premium"},
                    "output": f"Here is the config you asked for: aws_access_key_id = {key}", "error": None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="20 trials instead of 50")
    ap.add_argument("--trials", type=int, default=None)
    ap.add_argument("--seed", type=int, default=20261126)
    # 12, not 1: the analysis re-tests a view only once its candidate count grew by 2 % + 10 (analysis.judge
    # ``retest``), and that throttle also applies to the hard safety_failures limit, so fewer than 11 decisive
    # responses in a segment that already has history produce no command until more canary traffic arrives
    ap.add_argument("--burst", type=int, default=12, help="decisive responses per trial")
    ap.add_argument("--rate", type=float, default=500.0, help="background A/A responses/s (+ as many outcomes)")
    ap.add_argument("--warm", type=int, default=200, help="A/A responses per trial feature before the trials")
    ap.add_argument("--timeout", type=float, default=10.0, help="per trial")
    ap.add_argument("--out", default="reaction")
    a = ap.parse_args(argv)
    k = a.trials or (20 if a.quick else 50)

    from rollguard.client import ControlSubscriber
    from rollguard.signing import Verifier, generate_keypair
    from rollguard.simulate import Traffic
    from rollguard.topics import create_topics

    prefix = fresh_prefix("rt")
    settings = settings_for(prefix)
    features = [f"rt-{i}" for i in range(k)]
    spec_dir = Path(tempfile.mkdtemp(prefix="rollguard-bench-specs-"))
    write_specs(spec_dir, [*features, "rt-bg"])
    priv, pub = generate_keypair()
    print(f"reaction bench: broker {BOOTSTRAP}, topics {prefix}.*, {k} trials, burst {a.burst}, "
          f"background {a.rate:.0f} responses/s, seed {a.seed}", flush=True)

    rng = random.Random(a.seed)
    res: dict[str, Any] = {"machine": machine(), "seed": a.seed, "trials": k, "burst": a.burst,
                           "background_responses_per_s": a.rate, "prefix": prefix}
    create_topics(settings)
    cmds: queue.Queue[Any] = queue.Queue()
    sub = ControlSubscriber(settings, verifier=Verifier({"bench": pub}), on_change=cmds.put)
    proc = spawn_worker(settings, spec_dir, "bench", priv)
    bg: Background | None = None
    watch = GroupWatch.worker(settings, [settings.topics.pairs, settings.topics.outcomes, settings.topics.partials])
    trials: list[dict[str, Any]] = []
    wall_minus_mono = time.time() - time.monotonic()
    try:
        sub.start()
        prod = producer(settings)
        warm = []
        for i, f in enumerate(features):
            warm += encode_events(Traffic(feature=f, seed=a.seed + i).events(a.warm), settings)
        t_spawn = time.monotonic()
        produce_all(prod, warm)
        watch.wait_caught_up(watch.ends(), timeout=180, step=0.1, proc=proc.p)
        res["worker_ready_s"] = round(time.monotonic() - t_spawn, 2)
        bg = Background(settings, "rt-bg", a.seed + 10_000, a.rate)
        bg.start()
        time.sleep(2.0)
        early = []  # commands before any decisive event (false alarms on A/A warm-up)
        while not cmds.empty():
            early.append(cmds.get_nowait())
        fast = producer(settings, **{"linger.ms": 0})
        for i, f in enumerate(features):
            time.sleep(rng.uniform(0.3, 0.8))
            recs = encode_events(decisive(f, i, a.burst, rng), settings)
            t_fire = time.monotonic()
            produce_all(fast, recs, flush=False)
            fast.poll(0)
            t_produced = time.monotonic()
            fast.flush(5)
            got = None
            deadline = t_fire + a.timeout
            while got is None and time.monotonic() < deadline:
                try:
                    cmd = cmds.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if cmd.flag == f"{f}-model" and cmd.action == "rollback":
                    got = cmd
                else:
                    early.append(cmd)
            tr: dict[str, Any] = {"feature": f, "t_fire_wall": t_fire + wall_minus_mono,
                                  "produce_call_ms": round((t_produced - t_fire) * 1000, 3)}
            if got is not None:
                tr.update(command_id=got.command_id, scope=got.scope,
                          reaction_s=sub.received_at[got.command_id] - t_fire,
                          t_recv_wall=sub.received_at[got.command_id] + wall_minus_mono)
            trials.append(tr)
            print(f"  trial {i:2d} {f}: " + (f"{tr['reaction_s'] * 1000:7.1f} ms  scope {got.scope}"
                                             if got else "MISSED"), flush=True)
        res["unexpected_commands"] = [{"flag": c.flag, "action": str(c.action), "scope": c.scope} for c in early]
        res["rejections"] = len(sub.state.rejections)
        # stage split from the records' CreateTime (wall clock, ms)
        alerts = {}
        for m in read_topic(settings, settings.topics.alerts):
            d = orjson.loads(m.value())
            if d.get("kind") == "guard" and d["feature"] not in alerts:
                alerts[d["feature"]] = m.timestamp()[1] / 1000.0
        control = {orjson.loads(m.value())["command_id"]: m.timestamp()[1] / 1000.0
                   for m in read_topic(settings, settings.topics.control) if m.value()}
        for tr in trials:
            if "command_id" in tr and tr["feature"] in alerts and tr["command_id"] in control:
                tr["to_alert_s"] = alerts[tr["feature"]] - tr["t_fire_wall"]
                tr["to_command_s"] = control[tr["command_id"]] - tr["t_fire_wall"]
                tr["to_subscriber_s"] = tr["t_recv_wall"] - tr["t_fire_wall"]
    except BaseException:
        print(proc.tail(), file=sys.stderr)
        raise
    finally:
        if bg is not None:
            bg.stop_ev.set()
            bg.join(15)
        sub.close()
        watch.close()
        cleanup_proc(proc)
        shutil.rmtree(spec_dir, ignore_errors=True)
        res["deleted_topics"] = delete_prefixed_topics(settings, prefix)

    lat = [t["reaction_s"] * 1000 for t in trials if "reaction_s" in t]
    missed = sum(1 for t in trials if "reaction_s" not in t)

    def stats(xs: list[float]) -> dict[str, float]:
        return {"p50": percentile(xs, 50), "p90": percentile(xs, 90), "p99": percentile(xs, 99),
                "max": max(xs) if xs else float("nan"), "min": min(xs) if xs else float("nan"),
                "mean": sum(xs) / len(xs) if xs else float("nan")}

    res["reaction_ms"] = stats(lat)
    res["missed"] = missed
    split = [t for t in trials if "to_alert_s" in t]
    res["stages_ms"] = {
        "produce_to_guard_alert": stats([t["to_alert_s"] * 1000 for t in split]),
        "produce_to_command_record": stats([t["to_command_s"] * 1000 for t in split]),
        "produce_to_subscriber": stats([t["to_subscriber_s"] * 1000 for t in split]),
    }
    res["trial_results"] = trials
    r = res["reaction_ms"]
    m = res["machine"]
    print()
    print(f"### Reaction: decisive event -> verified command at a ControlSubscriber ({len(lat)}/{k} trials, "
          f"seed {a.seed}; {m['nproc']} cores {m['cpu']}, Python {m['python']})")
    print()
    print(md_table(["trials", "p50 ms", "p90 ms", "p99 ms", "max ms", "min ms", "missed", "target"],
                   [(len(lat), f"{r['p50']:.0f}", f"{r['p90']:.0f}", f"{r['p99']:.0f}", f"{r['max']:.0f}",
                     f"{r['min']:.0f}", missed, "p99 <= 1000 ms")]))
    print()
    st = res["stages_ms"]
    print(md_table(["stage (from produce, CreateTime)", "p50 ms", "p99 ms", "max ms"], [
        ("critical guard alert written (ingest batch)", *(f"{st['produce_to_guard_alert'][q]:.0f}"
                                                          for q in ("p50", "p99", "max"))),
        ("signed command written (partial -> analyze)", *(f"{st['produce_to_command_record'][q]:.0f}"
                                                          for q in ("p50", "p99", "max"))),
        ("command accepted by subscriber", *(f"{st['produce_to_subscriber'][q]:.0f}" for q in ("p50", "p99", "max"))),
    ]))
    print()
    print(f"Worker ready {res.get('worker_ready_s')} s after spawn (excluded). Background A/A traffic "
          f"{a.rate:.0f} responses/s on rt-bg during the trials; unexpected commands: "
          f"{len(res['unexpected_commands'])}; subscriber rejections: {res['rejections']}.")
    path = write_json(a.out, res)
    print(f"\nwrote {path.relative_to(REPO)}")
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())

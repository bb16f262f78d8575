"""The demo rollout: seeded traffic where the canary regresses only for premium users.

It starts a real worker process against the broker, produces traffic, and watches the control topic with
a verifying ``ControlSubscriber``. Success means exactly what a flag service would need: a signed rollback
for ``tier=premium`` and no command for any healthy segment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from rollguard.client import ControlSubscriber, EventProducer
from rollguard.config import Settings, Topics
from rollguard.contracts import Command
from rollguard.signing import Verifier, generate_keypair
from rollguard.simulate import Regression, Traffic
from rollguard.topics import create_topics

SPEC = Path(__file__).resolve().parent / "specs" / "support-reply.yaml"


def worker_env(settings: Settings, key_id: str, private_b64: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ROLLGUARD_BOOTSTRAP": settings.bootstrap, "ROLLGUARD_TOPIC_PREFIX": settings.topics.prefix,
        "ROLLGUARD_SIGNING_KEY_ID": key_id, "ROLLGUARD_SIGNING_KEY": private_b64,
        "ROLLGUARD_APP_ID": f"{settings.topics.prefix}-worker", "PYTHONUNBUFFERED": "1",
    })
    return env


def spawn_worker(settings: Settings, spec: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The real worker, as its own process (the way it runs in production)."""
    data_dir = tempfile.mkdtemp(prefix="rollguard-worker-")
    env = {**env, "ROLLGUARD_DATA_DIR": data_dir}
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child process
    return subprocess.Popen([sys.executable, "-m", "rollguard.cli", "worker", "--spec", str(spec)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_demo(settings: Settings, *, events: int, rate: float, seed: int, timeout: float, with_worker: bool = True,
             console: Console | None = None) -> bool:
    console = console or Console()
    if settings.topics.prefix == "rollguard":
        settings = settings.model_copy(update={"topics": Topics(prefix=f"demo{int(time.time())}")})
    key_id = "demo"
    priv, pub = generate_keypair()  # an ephemeral key pair for this run; production keys come from env/files
    console.rule("[bold]rollguard demo")
    console.print(f"broker {settings.bootstrap}, topics {settings.topics.prefix}.*, spec {SPEC.name}")
    t0 = time.monotonic()
    create_topics(settings)
    proc = None
    log_path = Path(tempfile.gettempdir()) / f"{settings.topics.prefix}-worker.log"
    if with_worker:
        proc = spawn_worker(settings, SPEC, worker_env(settings, key_id, priv), log_path)
        console.print(f"worker pid {proc.pid} (log {log_path})")
    sub = ControlSubscriber(settings, verifier=Verifier({key_id: pub}))
    traffic = Traffic(seed=seed, canary_weight=0.25,
                      regressions=[Regression("escalation_rate", 0.15, {"tier": "premium"})])
    console.print("traffic: baseline 75 % / canary 25 %; canary escalations 3 % -> 15 % for tier=premium only")
    producer = EventProducer(settings)
    sent = 0
    rollback: Command | None = None
    t_traffic = time.monotonic()
    gen = traffic.events(events)
    try:
        for ev in gen:
            if ev["schema"].startswith("rollguard.response"):
                producer.send_response(ev)
                sent += 1
                if sent % 500 == 0:
                    target = t_traffic + sent / rate
                    while time.monotonic() < target:
                        sub.poll(min(0.05, max(0.0, target - time.monotonic())))
                    rollback = _premium_rollback(sub)
                    if rollback is not None:
                        break
            else:
                producer.send_outcome(ev)
        producer.flush()
        deadline = time.monotonic() + timeout
        while rollback is None and time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                console.print(f"[red]worker exited with {proc.returncode}; see {log_path}[/red]")
                break
            sub.poll(0.25)
            rollback = _premium_rollback(sub)
        # give any (wrong) extra commands a moment to show up before judging
        sub.wait_for(lambda s: False, timeout=2.0)
    finally:
        producer.flush(10)
        if proc is not None:
            stop_worker(proc)
    elapsed = time.monotonic() - t_traffic
    commands = list(sub.state.latest.values())
    alerts = _read_alerts(settings)
    _summary(console, rollback, commands, alerts, sent, elapsed, time.monotonic() - t0, sub)
    sub.close()
    wrong = [c for c in commands if c.scope != {"tier": "premium"}]
    ok = rollback is not None and not wrong and not sub.state.rejections
    console.print("[bold green]DEMO PASSED[/bold green]" if ok else "[bold red]DEMO FAILED[/bold red]")
    return ok


def _premium_rollback(sub: ControlSubscriber) -> Command | None:
    for c in sub.state.latest.values():
        if c.action == "rollback" and c.scope == {"tier": "premium"}:
            return c
    return None


def _read_alerts(settings: Settings) -> list[dict[str, object]]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(settings.librdkafka(**{"group.id": f"demo-alerts-{time.time_ns()}", "enable.auto.commit": False}))
    c.assign([TopicPartition(settings.topics.alerts, 0, OFFSET_BEGINNING)])
    out = []
    idle = time.monotonic()
    while time.monotonic() - idle < 1.5:
        m = c.poll(0.2)
        value = None if m is None or m.error() else m.value()
        if value is None:
            continue
        idle = time.monotonic()
        out.append(orjson.loads(value))
    c.close()
    return out


def _summary(console: Console, rollback: Command | None, commands: list[Command], alerts: list[dict[str, object]],
             sent: int, elapsed: float, total: float, sub: ControlSubscriber) -> None:
    console.rule("alerts")
    for a in alerts:
        console.print(f"[yellow]{a.get('severity')}[/yellow] {a.get('title')}")
    console.rule("commands received by the ControlSubscriber (signature verified)")
    table = Table("seq", "action", "flag", "scope", "reason")
    for c in sorted(commands, key=lambda c: c.seq):
        table.add_row(str(c.seq), c.action.value, c.flag, str(c.scope or "all"), c.reason)
    console.print(table)
    if rollback is not None:
        ev = rollback.evidence
        console.print(f"rollback for tier=premium after {sent} responses produced, "
                      f"{elapsed:.1f} s after traffic began ({total:.1f} s including startup); "
                      f"evidence: canary {ev.get('canary')} vs baseline {ev.get('baseline')}, "
                      f"n={ev.get('n')}, p={ev.get('p')}")
    else:
        console.print(f"[red]no rollback for tier=premium after {sent} responses / {elapsed:.1f} s[/red]")
    if sub.state.rejections:
        console.print(f"[red]subscriber rejected {len(sub.state.rejections)} commands[/red]")

"""``rollguard`` command line (typer + rich)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from rollguard.config import Settings

app = typer.Typer(help="rollguard: safe AI feature rollouts on Kafka.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
topics_app = typer.Typer(help="Create and inspect rollguard's topics.", no_args_is_help=True)
spec_app = typer.Typer(help="Validate rollout specs.", no_args_is_help=True)
keys_app = typer.Typer(help="Command-signing keys.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(spec_app, name="spec")
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

Bootstrap = Annotated[str | None, typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers "
                                                "(default $ROLLGUARD_BOOTSTRAP or 127.0.0.1:9092)")]
Prefix = Annotated[str | None, typer.Option("--prefix", help="topic prefix (default $ROLLGUARD_TOPIC_PREFIX "
                                             "or rollguard)")]


def _settings(bootstrap: str | None = None, prefix: str | None = None, **kw: object) -> Settings:
    from rollguard.config import Topics

    return Settings.from_env(bootstrap=bootstrap, topics=Topics(prefix=prefix) if prefix else None, **kw)


@app.command()
def worker(
    spec: Annotated[Path, typer.Option("--spec", help="rollout spec file or directory of specs")],
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    app_id: Annotated[str | None, typer.Option(help="consumer groups (ID, ID-ingest) / changelog namespace")] = None,
    loglevel: str = "info",
) -> None:
    """Run the worker: the ingest loop (confluent-kafka, own thread) and the Faust analysis agent."""
    from rollguard.pipeline import SpecBook
    from rollguard.signing import Signer, SigningError
    from rollguard.spec import SpecError, load_specs
    from rollguard.streams.app import create_app, run_worker
    from rollguard.topics import create_topics

    settings = _settings(bootstrap, prefix, app_id=app_id)
    try:
        specs = load_specs(spec) if spec else {}
    except SpecError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        signer = Signer.from_env()
    except SigningError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    create_topics(settings)
    err.print(f"rollguard worker: {len(specs)} spec(s) {sorted(specs)} on {settings.bootstrap}, "
              f"topics {settings.topics.prefix}.*, key id {signer.key_id}")
    app_ = create_app(settings, SpecBook(specs, max_scan_chars=settings.max_scan_chars), signer)
    sys.argv = [sys.argv[0], "worker"]  # Faust's Worker reads argv
    run_worker(app_, loglevel=loglevel)


@topics_app.command("create")
def topics_create(bootstrap: Bootstrap = None, prefix: Prefix = None,
                  partitions: Annotated[int | None, typer.Option(help="partitions of input topics")] = None) -> None:
    """Create every rollguard topic (idempotent)."""
    from rollguard.topics import create_topics, topic_specs

    settings = _settings(bootstrap, prefix, partitions=partitions)
    result = create_topics(settings)
    for t in topic_specs(settings):
        cfg = ", ".join(f"{k}={v}" for k, v in t.config.items())
        console.print(f"{result[t.name]:8} {t.name:28} partitions={t.partitions} {cfg}")


@app.command()
def tail(
    what: Annotated[str, typer.Argument(help="alerts | control | dlq | decisions | metrics")],
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON record per line")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep waiting for new records")] = False,
    idle: Annotated[float, typer.Option(help="without --follow, stop after this many idle seconds")] = 2.0,
) -> None:
    """Print a topic's records from the beginning (alerts never contain raw prompt/response text)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    settings = _settings(bootstrap, prefix)
    names = {"alerts": settings.topics.alerts, "control": settings.topics.control, "dlq": settings.topics.dlq,
             "decisions": settings.topics.decisions, "metrics": settings.topics.metrics}
    if what not in names:
        err.print(f"[red]unknown stream {what!r}; choose one of {', '.join(names)}[/red]")
        raise typer.Exit(2)
    topic = names[what]
    c = Consumer(settings.librdkafka(**{"group.id": f"rollguard-tail-{time.time_ns()}",
                                         "enable.auto.commit": False}))
    md = c.list_topics(topic, timeout=10)
    parts = md.topics[topic].partitions if topic in md.topics else {0: None}
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    last = time.monotonic()
    try:
        while follow or time.monotonic() - last < idle:
            msg = c.poll(0.25)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            _print_record(what, msg.value(), as_json)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()


def _print_record(what: str, value: bytes | None, as_json: bool) -> None:
    if value is None:
        return
    if as_json:
        sys.stdout.write(value.decode("utf-8", "replace") + "\n")
        return
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        console.print(f"[yellow]<{len(value)} bytes, not JSON>[/yellow]")
        return
    if what == "alerts":
        color = {"critical": "red", "warn": "yellow"}.get(d.get("severity", ""), "cyan")
        console.print(f"[{color}]{d.get('severity', '?'):8}[/{color}] {d.get('ts', '')[:23]} "
                      f"{d.get('feature')} {d.get('title')}")
    elif what == "control":
        console.print(f"[bold]{d.get('action', '?'):9}[/bold] seq={d.get('seq')} {d.get('flag')} "
                      f"scope={d.get('scope') or 'all'} variant={d.get('variant')} :: {d.get('reason')}")
    elif what == "dlq":
        console.print(f"{d.get('topic')}[{d.get('partition')}]@{d.get('offset')} {d.get('size')}B :: "
                      f"{d.get('reason')}")
    else:
        console.print_json(data=d)


@spec_app.command("check")
def spec_check(path: Annotated[Path, typer.Argument(help="spec file or directory")]) -> None:
    """Validate rollout specs; a bad one is refused with the field and the problem."""
    from rollguard.spec import SpecError, load_specs

    try:
        specs = load_specs(path)
    except SpecError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for s in specs.values():
        console.print(f"[green]ok[/green] {s.feature} (flag {s.flag}, version {s.version}): "
                      f"{len(s.stages)} stages, {len(s.criteria)} criteria, segments by {s.segment_by}")


@keys_app.command("generate")
def keys_generate(key_id: Annotated[str, typer.Option(help="key id")] = "k1") -> None:
    """Print a fresh Ed25519 key pair as environment assignments (keep the private one secret)."""
    from rollguard.signing import generate_keypair

    priv, pub = generate_keypair()
    console.print(f"ROLLGUARD_SIGNING_KEY_ID={key_id}\nROLLGUARD_SIGNING_KEY={priv}\n"
                  f"ROLLGUARD_VERIFY_KEYS={key_id}:{pub}")


@app.command()
def demo(
    bootstrap: Bootstrap = None,
    events: Annotated[int, typer.Option(help="response events to produce")] = 40_000,
    rate: Annotated[float, typer.Option(help="events per second to produce")] = 4000.0,
    seed: int = 7,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the rollback")] = 180.0,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="a worker is already running")] = False,
) -> None:
    """Seeded rollout with a premium-only regression: exits 0 only if the premium rollback arrives."""
    from rollguard.demo import run_demo

    ok = run_demo(_settings(bootstrap), events=events, rate=rate, seed=seed, timeout=timeout,
                  with_worker=not no_worker, console=console)
    raise typer.Exit(0 if ok else 1)


def _segment_option(values: list[str] | None) -> dict[str, str]:
    scope: dict[str, str] = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep or not k or not val:
            err.print(f"[red]--segment expects k=v, got {v!r}[/red]")
            raise typer.Exit(2)
        scope[k] = val
    return scope


def _send_request(action: str, feature: str, segment: list[str] | None, reason: str, by: str | None,
                  bootstrap: str | None, prefix: str | None) -> None:
    """Manual control goes through the analysis (same partition as the feature's partials), so the worker signs
    and sequences it like its own decisions and the policy respects it."""
    import getpass

    from confluent_kafka import Producer

    from rollguard.contracts import ControlRequest

    settings = _settings(bootstrap, prefix)
    req = ControlRequest(feature=feature, action=action, scope=_segment_option(segment), reason=reason,
                         requested_by=by or getpass.getuser())
    # murmur2, like the worker's own producer: the request must land on the feature's partials partition
    producer = Producer(settings.librdkafka(**{"partitioner": "murmur2_random", "acks": "all"}))
    producer.produce(settings.topics.partials, key=feature.encode(), value=req.to_bytes())
    if producer.flush(15) != 0:
        err.print("[red]request not delivered[/red]")
        raise typer.Exit(1)
    console.print(f"requested {action} of {feature} in {req.scope or 'all segments'} (request {req.request_id}); "
                  f"follow with `rollguard tail control`")


Segment = Annotated[list[str] | None, typer.Option("--segment", "-s", help="k=v, repeatable; none = all segments")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="why (goes into the command and the audit trail)")]
By = Annotated[str | None, typer.Option("--by", help="who asks (default: your user name)")]


@app.command()
def pause(feature: str, segment: Segment = None, reason: Reason = ..., by: By = None,  # type: ignore[assignment]
          bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Freeze the candidate's weight (all segments, or one); the policy will not promote until a resume."""
    _send_request("pause", feature, segment, reason, by, bootstrap, prefix)


@app.command()
def resume(feature: str, segment: Segment = None, reason: Reason = ..., by: By = None,  # type: ignore[assignment]
           bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Lift a pause or rollback held at that scope."""
    _send_request("resume", feature, segment, reason, by, bootstrap, prefix)


@app.command()
def rollback(feature: str, segment: Segment = None, reason: Reason = ..., by: By = None,  # type: ignore[assignment]
             bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Serve the baseline (weight 0). Without --segment this is the feature's kill switch."""
    _send_request("rollback", feature, segment, reason, by, bootstrap, prefix)


@app.command()
def promote(feature: str, reason: Reason = ..., by: By = None,  # type: ignore[assignment]
            bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Move to the next stage now, without waiting for the gates."""
    _send_request("promote", feature, None, reason, by, bootstrap, prefix)


@app.command("kill-switch")
def kill_switch(reason: Reason = ..., by: By = None,  # type: ignore[assignment]
                app_id: Annotated[str | None, typer.Option(help="the worker's app id")] = None,
                bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Roll back every feature the worker is rolling out (everyone to its baseline), through the normal path."""
    from rollguard.status import read_states

    features = sorted(read_states(_settings(bootstrap, prefix, app_id=app_id)))
    if not features:
        err.print("no rollout state found: nothing to roll back")
        raise typer.Exit(1)
    for feature in features:
        _send_request("rollback", feature, None, f"kill switch: {reason}", by, bootstrap, prefix)


@spec_app.command("apply")
def spec_apply(path: Annotated[Path, typer.Argument(help="spec file or directory")],
               bootstrap: Bootstrap = None, prefix: Prefix = None) -> None:
    """Validate and publish specs to the compacted rollouts topic; running workers pick them up."""
    from confluent_kafka import Producer

    from rollguard.spec import SpecError, load_specs
    from rollguard.topics import create_topics

    try:
        specs = load_specs(path)
    except SpecError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    settings = _settings(bootstrap, prefix)
    create_topics(settings)
    producer = Producer(settings.librdkafka(acks="all"))
    for s in specs.values():
        producer.produce(settings.topics.rollouts, key=s.feature.encode(),
                         value=orjson.dumps(s.model_dump(mode="json")))
    if producer.flush(15) != 0:
        err.print("[red]not delivered[/red]")
        raise typer.Exit(1)
    for s in specs.values():
        console.print(f"applied {s.feature} version {s.version} to {settings.topics.rollouts}")


@app.command()
def status(
    feature: Annotated[str | None, typer.Argument(help="one feature (default: all)")] = None,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
    app_id: Annotated[str | None, typer.Option(help="the worker's app id (its state table's namespace)")] = None,
) -> None:
    """Per feature and segment: stage, weight, holds, criteria estimates and verdicts, last command."""
    from rollguard.status import read_states, render

    settings = _settings(bootstrap, prefix, app_id=app_id)
    states = read_states(settings)
    if feature:
        states = {k: v for k, v in states.items() if k == feature}
    if not states:
        err.print(f"no rollout state found for {feature or 'any feature'} (app id {settings.app_id})")
        raise typer.Exit(1)
    render(states, console)


@app.command()
def simulate(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write JSONL here instead of to Kafka")] = None,
    events: Annotated[int | None, typer.Option(
        help="response events (each followed by its outcome); default 20,000 or the scenario's size")] = None,
    seed: int = 7,
    canary_weight: float = 0.25,
    regress: Annotated[list[str] | None, typer.Option(
        help="METRIC=VALUE[@k=v,...][+START], e.g. escalation_rate=0.15@tier=premium (repeatable)")] = None,
    scenario: Annotated[str | None, typer.Option(
        help="a named preset from rollguard.simulate.SCENARIOS (aa, escalation-premium, ...); "
             "--list-scenarios shows them")] = None,
    list_scenarios: Annotated[bool, typer.Option("--list-scenarios", help="print the presets and exit")] = False,
    bootstrap: Bootstrap = None,
    prefix: Prefix = None,
) -> None:
    """Seeded traffic with known injected regressions, to a JSONL file or to Kafka."""
    from rollguard.simulate import SCENARIOS, Traffic, parse_regression

    if list_scenarios:
        for sc in SCENARIOS.values():
            t = sc.truth
            truth = "none" if not t.regression else f"{t.action} {t.scope or 'all'} {t.metric} from event {t.start}"
            console.print(f"{sc.name:22} {sc.n:>7,} responses  truth: {truth}\n{'':22} {sc.description}")
        return
    if scenario is not None:
        if scenario not in SCENARIOS:
            err.print(f"unknown scenario {scenario!r}; one of: {', '.join(SCENARIOS)}")
            raise typer.Exit(2)
        if regress:
            err.print("--scenario and --regress are exclusive")
            raise typer.Exit(2)
        sc = SCENARIOS[scenario]
        traffic = sc.traffic(seed)
        events = events or sc.n
        t = sc.truth
        err.print(f"scenario {sc.name}: {sc.description}")
        err.print(f"ground truth: {t.action} {t.scope or 'all'} {t.metric} from event {t.start}"
                  + ("" if sc.spec is None and not sc.extra_criteria else
                     " (judge with the scenario's spec: rollguard.simulate.SCENARIOS[...].spec/extra_criteria)"))
    else:
        traffic = Traffic(seed=seed, canary_weight=canary_weight,
                          regressions=[parse_regression(r) for r in regress or []])
        events = events or 20_000
    for r in traffic.regressions:
        err.print(f"ground truth: {r.arm} {r.metric} -> {r.value} in {r.segment or 'all'} from event {r.start}")
    if out is not None:
        with out.open("wb") as fh:
            for ev in traffic.events(events):
                fh.write(orjson.dumps(ev) + b"\n")
        err.print(f"wrote {events} responses + outcomes to {out}")
        return
    from rollguard.client import EventProducer

    with EventProducer(_settings(bootstrap, prefix)) as producer:
        for ev in traffic.events(events):
            (producer.send_response if ev["schema"].startswith("rollguard.response") else producer.send_outcome)(ev)
    err.print(f"sent {producer.sent}, delivered {producer.delivered}, failed {producer.failed}")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="JSONL recording of response/outcome events")],
    spec: Annotated[Path, typer.Option("--spec", help="rollout spec file or directory")],
    flush_every: Annotated[int, typer.Option(help="records per partial (the worker flushes by time)")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="print decisions as JSON lines")] = False,
) -> None:
    """Back-test a spec over recorded traffic with the worker's own step functions, without Kafka."""
    from rich.progress import Progress

    from rollguard.pipeline import SpecBook
    from rollguard.replay import read_jsonl
    from rollguard.replay import replay as run_replay
    from rollguard.spec import SpecError, load_specs

    try:
        specs = load_specs(spec)
    except SpecError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    size = file.stat().st_size
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("replaying", total=size)
        done = [0]

        def records():  # type: ignore[no-untyped-def]
            for raw in read_jsonl(file):
                done[0] += len(raw) + 1
                yield raw

        result = run_replay(records(), SpecBook(specs), flush_every=flush_every,
                            on_progress=lambda _: progress.update(task, completed=done[0]))
    decisions = result.decoded("decisions")
    if as_json:
        for d in decisions:
            sys.stdout.write(orjson.dumps(d).decode() + "\n")
        return
    console.print(f"{result.records} records, {len(result.emits.get('dlq', []))} to the DLQ, "
                  f"{len(decisions)} decisions")
    for d in decisions:
        ev: dict[str, Any] = d["evidence"]  # type: ignore[assignment]
        console.print(f"[bold]{d['decision']:8}[/bold] {d['feature']} scope={d['scope'] or 'all'} "
                      f"{d['criterion']}: canary {ev.get('canary')} vs baseline {ev.get('baseline')} "
                      f"n={ev.get('n')} p={ev.get('p')} at event time {d.get('event_time')}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``rollguard status``: read each feature's checkpointed state from the worker's changelog and show it.

The analysis checkpoints every feature's state (policy + stage totals) into a compacted changelog topic
after each step, so the current state can be read without asking a worker anything.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rollguard.config import Settings
from rollguard.pipeline import FeatureRuntime
from rollguard.policy import scope_of_text
from rollguard.topics import read_to_end


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-rollout-state-changelog"


def read_states(settings: Settings, timeout: float = 10.0) -> dict[str, FeatureRuntime]:
    """The last checkpoint of every feature in the changelog (all partitions, to the end)."""
    latest: dict[str, bytes] = {}
    for m in read_to_end(settings, changelog_topic(settings), timeout=timeout):
        key, value = m.key(), m.value()
        if key is not None and value:
            latest[key.decode()] = value
    return {k: FeatureRuntime.from_bytes(v) for k, v in latest.items()}


def render(states: dict[str, FeatureRuntime], console: Console) -> None:
    for feature, rt in sorted(states.items()):
        st = rt.rollout
        console.rule(f"[bold]{feature}[/bold]  stage [cyan]{st.stage}[/cyan]  spec {st.spec_version}")
        weights = ", ".join(f"{k}={v:g}" for k, v in sorted(st.weights.items())) or "-"
        holds = ", ".join(f"{k}: {v} ({st.held_by.get(k, '?')})" for k, v in sorted(st.scopes.items())) or "none"
        console.print(f"weights: {weights}    holds: {holds}    seq {st.seq}")
        if st.gates:
            pending = "; ".join(st.gates.get("pending", [])) or "all pass"
            console.print(f"gates of {st.gates.get('stage')}: {pending}")
        if st.last_command:
            lc = st.last_command
            console.print(f"last command: #{lc['seq']} {lc['action']} {lc['scope']} by {lc['by']}: {lc['reason']}")
        table = Table("criterion", "scope", "verdict", "canary", "baseline", "n (canary/base)", "p")
        order = sorted(st.verdicts.items(), key=lambda kv: (kv[0].split("|")[0], kv[0].split("|")[1] != "all",
                                                            kv[0]))
        for key, v in order:
            metric, scope = key.split("|", 1)
            if scope != "all" and "," in scope:
                continue  # the full cross product is in --json output; single attributes and overall here
            held = st.status(scope_of_text(scope))
            verdict = v.get("outcome", "?") + (f" [{held}]" if held else "")
            color = {"worse": "red", "not_worse": "green"}.get(str(v.get("outcome")), "yellow")
            table.add_row(metric, scope, f"[{color}]{verdict}[/{color}]", _fmt(v.get("canary")),
                          _fmt(v.get("baseline")), f"{v.get('n')}/{v.get('n_baseline')}", _fmt(v.get("p")))
        console.print(table)


def _fmt(x: object) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)

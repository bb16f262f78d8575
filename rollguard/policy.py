"""Rollout policy: turns the analysis of a feature into commands, once each, with a per-flag seq.

The state here is what a restarted worker must not forget: which scopes are paused or rolled back,
which decisions were already issued (by deterministic id), and the flag's last ``seq``. It serialises to a
small JSON document that the Faust runtime keeps in a changelog-backed table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rollguard.analysis import Finding, Scope, scope_dict, scope_text
from rollguard.contracts import Action, Alert, Command, DecisionRecord, Severity
from rollguard.spec import RolloutSpec

_NS = uuid.UUID("6f1c7d3e-3b0a-4c55-9a53-6b1f4f0e2a11")

#: A rollback outranks a pause: a scope already rolled back is never "only" paused afterwards.
_RANK = {"alert": 0, "hold": 1, "pause": 2, "rollback": 3}


@dataclass
class RolloutState:
    """Per-feature policy state (JSON-serialisable; lives in a changelog-backed table)."""

    feature: str
    spec_version: str = ""
    stage: str = ""
    stage_started: float = 0.0  # event time, epoch seconds
    scopes: dict[str, str] = field(default_factory=dict)  # scope text -> "paused" | "rolled_back"
    issued: dict[str, str] = field(default_factory=dict)  # decision key -> command_id
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature, "spec_version": self.spec_version, "stage": self.stage,
            "stage_started": self.stage_started, "scopes": self.scopes, "issued": self.issued, "seq": self.seq,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        return cls(**data)

    def held(self, action: str) -> list[Scope]:
        """Scopes where an action at least as strong as ``action`` is already in force."""
        out: list[Scope] = []
        for text, st in self.scopes.items():
            if _RANK["rollback" if st == "rolled_back" else "pause"] >= _RANK.get(action, 0):
                out.append(_scope_of_text(text))
        return out

    def status(self, scope: Scope) -> str | None:
        """The strongest action in force over ``scope`` (its own, or a coarser scope containing it)."""
        best: str | None = None
        for text, st in self.scopes.items():
            parts = {} if text == "all" else dict(p.split("=", 1) for p in text.split(","))
            if all(dict(scope).get(k) == v for k, v in parts.items()):
                action = "rollback" if st == "rolled_back" else "pause"
                if best is None or _RANK[action] > _RANK[best]:
                    best = action
        return best


def _scope_of_text(text: str) -> Scope:
    if text == "all":
        return ()
    pairs = (p.split("=", 1) for p in text.split(","))
    return tuple(sorted((k, v) for k, v in pairs))


@dataclass(frozen=True)
class Decision:
    """A policy outcome ready to be published: command (signed later), alert and audit record."""

    command: Command | None
    alert: Alert
    record: DecisionRecord


def decide(state: RolloutState, spec: RolloutSpec, actions: list[Finding], *, now: datetime | None = None,
           event_time: datetime | None = None, issued_by: str = "policy") -> list[Decision]:
    """New decisions for the chosen scopes; a decision already issued or outranked is skipped."""
    out: list[Decision] = []
    for f in actions:
        c = f.criterion
        if c.action in ("alert", "hold"):
            key = f"{c.action}|{c.metric}|{scope_text(f.scope)}|{state.stage}"
            if key in state.issued:
                continue
            state.issued[key] = ""
            alert = _alert(spec, f, None, Severity.WARN)
            out.append(Decision(None, alert, _record(spec, state, f, c.action, None, event_time)))
            continue
        in_force = state.status(f.scope)
        if in_force is not None and _RANK[in_force] >= _RANK[c.action]:
            continue
        key = f"{c.action}|{scope_text(f.scope)}|{state.stage}"
        if key in state.issued:
            continue
        cmd = _command(state, spec, f, now=now, issued_by=issued_by)
        state.issued[key] = cmd.command_id
        state.scopes[scope_text(f.scope)] = "rolled_back" if c.action == "rollback" else "paused"
        alert = _alert(spec, f, cmd, Severity.CRITICAL if c.action == "rollback" else Severity.WARN)
        out.append(Decision(cmd, alert, _record(spec, state, f, c.action, cmd.command_id, event_time)))
    return out


def _command(state: RolloutState, spec: RolloutSpec, f: Finding, *, now: datetime | None,
             issued_by: str) -> Command:
    c = f.criterion
    action = Action.ROLLBACK if c.action == "rollback" else Action.PAUSE
    state.seq += 1
    ident = uuid.uuid5(_NS, f"{spec.feature}|{state.spec_version}|{action}|{scope_text(f.scope)}|{state.stage}")
    ev = f.evidence()
    reason = (f"{c.metric} {ev['canary']} vs baseline {ev['baseline']} "
              f"({c.bound_name} {getattr(c, c.bound_name)}) in {scope_text(f.scope)}")
    return Command(
        command_id=str(ident), seq=state.seq, flag=spec.flag, feature=spec.feature, action=action,
        variant=spec.candidate, scope=scope_dict(f.scope), weight=0.0 if action == Action.ROLLBACK else None,
        stage=state.stage or None, reason=reason, evidence=ev, issued_at=now or datetime.now(UTC),
        issued_by=issued_by,
    )


def _alert(spec: RolloutSpec, f: Finding, cmd: Command | None, severity: Severity) -> Alert:
    c = f.criterion
    verb = {"rollback": "rolled back", "pause": "paused", "hold": "held", "alert": "flagged"}[c.action]
    return Alert(
        severity=severity, kind="srm" if c.metric == "srm" else "criterion", feature=spec.feature,
        variant=spec.candidate, segment=scope_dict(f.scope),
        title=f"{spec.candidate} {verb} in {scope_text(f.scope)}: {c.metric} violates {c.bound_name}",
        evidence=f.evidence(), command_id=cmd.command_id if cmd else None,
    )


def _record(spec: RolloutSpec, state: RolloutState, f: Finding, decision: str,
            command_id: str | None, event_time: datetime | None) -> DecisionRecord:
    return DecisionRecord(
        feature=spec.feature, spec_version=state.spec_version, decision=decision, scope=scope_dict(f.scope),
        criterion=f.criterion.metric, evidence=f.evidence(), command_id=command_id, event_time=event_time,
    )

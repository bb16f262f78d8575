"""Rollout policy: the per-feature state machine that turns analysis into commands, once each.

A feature moves through its spec's stages (shadow, canary weights, expansion by segment, full). It is
promoted when every gate of its stage passes (minimum candidate traffic, minimum duration, every guardrail
criterion shown *not worse* overall, no pause in force); it holds while anything is inconclusive; a
violated criterion pauses or rolls back the scopes the analysis attributed it to; too little traffic by a
stage's ``max_duration`` reverts it (the LaunchDarkly rule); an operator can pause, resume, roll back or
promote by hand, and a manual pause is only lifted by a resume.

The state is what a restarted worker must not forget: stage, held scopes, issued decisions (deterministic
ids), the flag's last ``seq``, latest verdicts. It serialises to JSON kept in a changelog-backed table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rollguard.analysis import Finding, Scope, scope_dict, scope_text
from rollguard.contracts import Action, Alert, Command, DecisionRecord, Severity
from rollguard.spec import OUTCOME_METRICS, SHADOW_METRICS, Criterion, RolloutSpec, Stage

_NS = uuid.UUID("6f1c7d3e-3b0a-4c55-9a53-6b1f4f0e2a11")

#: A rollback outranks a pause: a scope already rolled back is never "only" paused afterwards.
_RANK = {"alert": 0, "hold": 1, "pause": 2, "rollback": 3}
HISTORY = 50


def scope_of_text(text: str) -> Scope:
    if text == "all":
        return ()
    pairs = (p.split("=", 1) for p in text.split(","))
    return tuple(sorted((k, v) for k, v in pairs))


def _covers(outer: Scope, inner: Scope) -> bool:
    return set(outer) <= set(inner)


@dataclass
class RolloutState:
    """Per-feature policy state (JSON-serialisable; lives in a changelog-backed table)."""

    feature: str
    spec_version: str = ""
    stage: str = ""
    stage_started: float = 0.0  # event time, epoch seconds
    scopes: dict[str, str] = field(default_factory=dict)  # scope text -> "paused" | "rolled_back"
    held_by: dict[str, str] = field(default_factory=dict)  # scope text -> "policy" | "manual"
    weights: dict[str, float] = field(default_factory=dict)  # scope text -> candidate weight in force
    issued: dict[str, str] = field(default_factory=dict)  # decision key -> command_id
    seq: int = 0
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # "metric|scope" -> latest evidence
    gates: dict[str, Any] = field(default_factory=dict)  # latest gate check of the current stage
    last_command: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def held(self, action: str) -> list[Scope]:
        """Scopes where an action at least as strong as ``action`` is already in force."""
        out: list[Scope] = []
        for text, st in self.scopes.items():
            if _RANK["rollback" if st == "rolled_back" else "pause"] >= _RANK.get(action, 0):
                out.append(scope_of_text(text))
        return out

    def status(self, scope: Scope) -> str | None:
        """The strongest action in force over ``scope`` (its own, or a coarser scope containing it)."""
        best: str | None = None
        for text, st in self.scopes.items():
            if _covers(scope_of_text(text), scope):
                action = "rollback" if st == "rolled_back" else "pause"
                if best is None or _RANK[action] > _RANK[best]:
                    best = action
        return best

    def weight(self, scope: Scope) -> float:
        """The candidate weight in force for ``scope`` (the most specific weight set over it)."""
        best, depth = self.weights.get("all", 0.0), -1
        for text, w in self.weights.items():
            s = scope_of_text(text)
            if _covers(s, scope) and len(s) > depth:
                best, depth = w, len(s)
        return best


@dataclass(frozen=True)
class Decision:
    """A policy outcome ready to be published: command (signed later), alert and audit record."""

    command: Command | None
    alert: Alert
    record: DecisionRecord


def start(state: RolloutState, spec: RolloutSpec, clock: float) -> None:
    """Enter the spec's first stage (or keep the current one when the spec only changed its criteria)."""
    names = [s.name for s in spec.stages]
    if state.stage not in names:
        first = spec.stages[0]
        state.stage, state.stage_started = first.name, clock
        state.weights = {"all": first.weight or 0.0}
    state.spec_version = spec.version


def decide(state: RolloutState, spec: RolloutSpec, actions: list[Finding], *, now: datetime | None = None,
           event_time: datetime | None = None, issued_by: str = "policy") -> list[Decision]:
    """New decisions for the scopes the analysis chose; a decision already issued or outranked is skipped."""
    out: list[Decision] = []
    for f in actions:
        c = f.criterion
        if c.action in ("alert", "hold"):
            key = f"{c.action}|{c.metric}|{scope_text(f.scope)}|{state.stage}"
            if key in state.issued:
                continue
            state.issued[key] = ""
            alert = _alert(spec, f.scope, f"{c.metric} violates {c.bound_name}", c.action, f.evidence(), None,
                           Severity.WARN)
            out.append(Decision(None, alert, _record(spec, state, f.scope, c.action, c.metric, f.evidence(), None,
                                                     event_time)))
            continue
        in_force = state.status(f.scope)
        if in_force is not None and _RANK[in_force] >= _RANK[c.action]:
            continue
        action = Action.ROLLBACK if c.action == "rollback" else Action.PAUSE
        ev = f.evidence()
        reason = (f"{c.metric} {ev['canary']} vs baseline {ev['baseline']} "
                  f"({c.bound_name} {getattr(c, c.bound_name)}) in {scope_text(f.scope)}")
        out.extend(_issue(state, spec, action, f.scope, reason, ev, criterion=c.metric, now=now,
                          event_time=event_time, issued_by=issued_by))
    return out


def _issue(state: RolloutState, spec: RolloutSpec, action: Action, scope: Scope, reason: str,
           evidence: dict[str, Any], *, criterion: str | None, now: datetime | None, event_time: datetime | None,
           issued_by: str, weight: float | None = None, stage: str | None = None,
           request_id: str | None = None) -> list[Decision]:
    """Record one command in the state (idempotently) and build its decision."""
    text = scope_text(scope)
    stage = stage or state.stage
    key = f"{action.value}|{text}|{stage}" + (f"|{request_id}" if request_id else "")
    if key in state.issued:
        return []
    if action == Action.ROLLBACK:
        weight = 0.0
    elif action == Action.PAUSE and weight is None:
        weight = state.weight(scope)  # freeze at what is in force, so flag services need no history
    state.seq += 1
    ident = uuid.uuid5(_NS, f"{spec.feature}|{state.spec_version}|{key}")
    cmd = Command(
        command_id=str(ident), seq=state.seq, flag=spec.flag, feature=spec.feature, action=action,
        variant=spec.candidate, scope=scope_dict(scope), weight=weight, stage=stage or None, reason=reason,
        evidence=evidence, issued_at=now or datetime.now(UTC), issued_by=issued_by,
    )
    state.issued[key] = cmd.command_id
    if action == Action.ROLLBACK:
        state.scopes[text] = "rolled_back"
        state.held_by[text] = issued_by
    elif action == Action.PAUSE:
        if state.scopes.get(text) != "rolled_back":
            state.scopes[text] = "paused"
            state.held_by[text] = issued_by
    elif action == Action.RESUME:
        state.scopes.pop(text, None)
        state.held_by.pop(text, None)
    if weight is not None and action in (Action.PROMOTE, Action.SET_WEIGHT, Action.ROLLBACK):
        if action != Action.ROLLBACK:  # a stage weight supersedes finer stage weights (not rolled-back scopes)
            for t in [t for t in state.weights if t != text and _covers(scope, scope_of_text(t))
                      and len(scope_of_text(t)) > len(scope) and state.scopes.get(t) != "rolled_back"]:
                del state.weights[t]
        state.weights[text] = weight
    state.last_command = {"action": action.value, "scope": text, "seq": cmd.seq, "command_id": cmd.command_id,
                          "reason": reason, "by": issued_by}
    severity = {Action.ROLLBACK: Severity.CRITICAL, Action.PAUSE: Severity.WARN}.get(action, Severity.INFO)
    verb = {"rollback": "rolled back", "pause": "paused", "resume": "resumed", "promote": "promoted",
            "set_weight": "re-weighted"}[action.value]
    alert = _alert(spec, scope, reason, verb, evidence, cmd.command_id, severity)
    record = _record(spec, state, scope, action.value, criterion, evidence, cmd.command_id, event_time)
    return [Decision(cmd, alert, record)]


# ------------------------------------------------------------------------------------------- stage gates


def stage_criteria(spec: RolloutSpec, stage: Stage) -> list[Criterion]:
    """The criteria that apply in a stage: a shadow stage splits nothing (no SRM) and serves nothing (no
    outcomes); paired shadow metrics mean nothing once the candidate is live."""
    if stage.mode == "shadow":
        return [c for c in spec.criteria if c.metric != "srm" and c.metric not in OUTCOME_METRICS]
    return [c for c in spec.criteria if c.metric not in SHADOW_METRICS]


def check_gates(state: RolloutState, spec: RolloutSpec, stage: Stage, *, candidate_n: int,
                clock: float) -> dict[str, Any]:
    """Which gates of the current stage pass; the result is kept in the state for ``rollguard status``."""
    elapsed = clock - state.stage_started
    pending: list[str] = []
    if candidate_n < stage.min_requests:
        pending.append(f"min_requests {candidate_n}/{stage.min_requests}")
    if stage.min_duration is not None and elapsed < stage.min_duration.total_seconds():
        pending.append(f"min_duration {elapsed:.0f}/{stage.min_duration.total_seconds():.0f}s")
    for c in stage_criteria(spec, stage):
        v = state.verdicts.get(f"{c.metric}|all")
        outcome = v.get("outcome") if v else "untested"
        if c.metric in ("srm", "safety_failures") or c.kind == "signal":
            if outcome == "worse":
                pending.append(f"{c.metric} worse")
        elif outcome != "not_worse":
            pending.append(f"{c.metric} {outcome}")
    paused = sorted(t for t, st in state.scopes.items() if st == "paused")
    if paused:  # a pause means a person must look: nothing moves until it is resumed
        pending.append(f"paused: {', '.join(paused)}")
    if state.scopes.get("all") == "rolled_back":
        pending.append("rolled back for all")
    return {"stage": stage.name, "pending": pending, "elapsed_s": round(elapsed, 1), "candidate_n": candidate_n}


def promote(state: RolloutState, spec: RolloutSpec, *, clock: float, reason: str, evidence: dict[str, Any],
            now: datetime | None, event_time: datetime | None, issued_by: str = "policy",
            request_id: str | None = None) -> list[Decision]:
    """Move to the next stage: one promote command, or one per segment the next stage expands to."""
    idx = spec.stage_index(state.stage)
    if idx + 1 >= len(spec.stages):
        return []
    nxt = spec.stages[idx + 1]
    weight = nxt.weight or 0.0
    scopes: list[Scope] = [()]
    if nxt.segments:
        scopes = [((attr, v),) for attr, values in sorted(nxt.segments.items()) for v in values]
    out: list[Decision] = []
    for scope in scopes:
        if state.status(scope) == "rollback":
            continue  # a rolled-back segment stays on the baseline
        out.extend(_issue(state, spec, Action.PROMOTE, scope, reason, evidence, criterion=None, now=now,
                          event_time=event_time, issued_by=issued_by, weight=weight, stage=nxt.name,
                          request_id=request_id))
    state.history = [*state.history, {"from": state.stage, "to": nxt.name, "at": clock, "by": issued_by}][-HISTORY:]
    state.stage, state.stage_started = nxt.name, clock
    state.gates = {}
    return out


def revert_for_traffic(state: RolloutState, spec: RolloutSpec, stage: Stage, *, candidate_n: int, clock: float,
                       now: datetime | None, event_time: datetime | None) -> list[Decision]:
    """Too little traffic by ``max_duration``: roll the candidate back rather than wait forever."""
    if stage.max_duration is None or candidate_n >= stage.min_requests:
        return []
    if clock - state.stage_started < stage.max_duration.total_seconds():
        return []
    reason = (f"stage {stage.name}: {candidate_n} candidate requests after "
              f"{stage.max_duration.total_seconds():.0f}s, fewer than {stage.min_requests}")
    return _issue(state, spec, Action.ROLLBACK, (), reason, {"metric": "min_requests", "n": candidate_n},
                  criterion="min_requests", now=now, event_time=event_time, issued_by="policy")


def manual(state: RolloutState, spec: RolloutSpec, action: str, scope: Scope, *, reason: str, by: str,
           request_id: str, clock: float, now: datetime | None, event_time: datetime | None) -> list[Decision]:
    """An operator's command, through the same path (signed, sequenced, audited) as the policy's own."""
    evidence = {"metric": "manual", "requested_by": by}
    if action == "promote":
        return promote(state, spec, clock=clock, reason=reason, evidence=evidence, now=now, event_time=event_time,
                       issued_by=f"manual:{by}", request_id=request_id)
    act = Action(action)
    if act == Action.RESUME and scope_text(scope) not in state.scopes:
        return []
    weight = state.weight(scope) if act == Action.RESUME else None
    return _issue(state, spec, act, scope, reason, evidence, criterion=None, now=now, event_time=event_time,
                  issued_by=f"manual:{by}", weight=weight, request_id=request_id)


def _alert(spec: RolloutSpec, scope: Scope, what: str, verb: str, evidence: dict[str, Any], command_id: str | None,
           severity: Severity) -> Alert:
    return Alert(
        severity=severity, kind="srm" if evidence.get("metric") == "srm" else "criterion", feature=spec.feature,
        variant=spec.candidate, segment=scope_dict(scope),
        title=f"{spec.candidate} {verb} in {scope_text(scope)}: {what}", evidence=evidence, command_id=command_id,
    )


def _record(spec: RolloutSpec, state: RolloutState, scope: Scope, decision: str, criterion: str | None,
            evidence: dict[str, Any], command_id: str | None, event_time: datetime | None) -> DecisionRecord:
    return DecisionRecord(
        feature=spec.feature, spec_version=state.spec_version, decision=decision, scope=scope_dict(scope),
        criterion=criterion, evidence=evidence, command_id=command_id, event_time=event_time,
    )

"""Wire contracts (v1): pydantic models are the single source of truth; orjson is the only codec.

Every record rollguard reads or writes on Kafka is one of these models. Decoding never raises anything
but :class:`ContractError`, whose ``reason`` is short and machine-greppable, so the ingest path can send a
bad record to the DLQ with its reason and keep going.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

RESPONSE_SCHEMA: Final = "rollguard.response/v1"
OUTCOME_SCHEMA: Final = "rollguard.outcome/v1"
COMMAND_SCHEMA: Final = "rollguard.command/v1"
ALERT_SCHEMA: Final = "rollguard.alert/v1"
DLQ_SCHEMA: Final = "rollguard.dlq/v1"
PARTIAL_SCHEMA: Final = "rollguard.partial/v1"
DECISION_SCHEMA: Final = "rollguard.decision/v1"
METRICS_SCHEMA: Final = "rollguard.metrics/v1"
REQUEST_SCHEMA: Final = "rollguard.request/v1"

#: Limits on what a producer may send; generous for real traffic, tight enough that one hostile record
#: cannot blow up memory or the segment space.
MAX_SEGMENT_KEYS = 16
MAX_LABEL_CHARS = 128

Label = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_CHARS)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ContractError(ValueError):
    """A record that does not meet its contract; ``reason`` goes to the DLQ verbatim."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def to_bytes(self) -> bytes:
        return encode(self)


class Usage(BaseModel):
    """Token usage; names follow the OpenTelemetry GenAI conventions (gen_ai.usage.*)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


def _check_segment(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_SEGMENT_KEYS:
        raise ValueError(f"at most {MAX_SEGMENT_KEYS} segment attributes, got {len(value)}")
    for k, v in value.items():
        if not k or len(k) > MAX_LABEL_CHARS or len(v) > MAX_LABEL_CHARS:
            raise ValueError(f"segment attribute {k[:40]!r}: names and values are 1..{MAX_LABEL_CHARS} chars")
    return value


class ResponseEvent(_Wire):
    """One AI response (live or shadow) as the producing service saw it."""

    schema_: Literal["rollguard.response/v1"] = Field(default=RESPONSE_SCHEMA, alias="schema")
    event_id: Label
    request_id: Label
    ts: datetime
    feature: Label
    variant: Label
    mode: Literal["live", "shadow"] = "live"
    segment: dict[str, str] = Field(default_factory=dict)
    model: str | None = None
    prompt_version: str | None = None
    input: str = ""
    output: str = ""
    latency_ms: float | None = Field(default=None, ge=0)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = Field(default=None, ge=0)
    error: str | None = None
    fallback: bool = False
    refused: bool | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("segment")
    @classmethod
    def _segment_bounded(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_segment(value)


class OutcomeEvent(_Wire):
    """What happened after a response; may arrive before it, or hours later."""

    schema_: Literal["rollguard.outcome/v1"] = Field(default=OUTCOME_SCHEMA, alias="schema")
    event_id: Label
    request_id: Label
    ts: datetime
    feature: Label
    task_success: bool | None = None
    escalated: bool | None = None
    feedback: float | None = Field(default=None, ge=-1, le=1)


class Action(StrEnum):
    PAUSE = "pause"
    ROLLBACK = "rollback"
    RESUME = "resume"
    PROMOTE = "promote"
    SET_WEIGHT = "set_weight"


class Command(_Wire):
    """A control command for a flag service; signed, with a per-flag increasing ``seq``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    schema_: Literal["rollguard.command/v1"] = Field(default=COMMAND_SCHEMA, alias="schema")
    command_id: str
    seq: int = Field(ge=0)
    flag: Label
    feature: Label
    action: Action
    variant: Label
    scope: dict[str, str] = Field(default_factory=dict)
    weight: float | None = Field(default=None, ge=0, le=1)
    stage: str | None = None
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    issued_at: datetime = Field(default_factory=utcnow)
    issued_by: str = "policy"
    key_id: str | None = None
    signature: str | None = None

    @property
    def control_key(self) -> str:
        """Compaction key: one current state per (flag, scope) so segment rollbacks don't overwrite."""
        return control_key(self.flag, self.scope)

    def signing_payload(self) -> bytes:
        """Canonical bytes the signature covers: every field except the signature itself."""
        body = self.model_dump(mode="json", by_alias=True, exclude={"signature"})
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def scope_label(scope: dict[str, str]) -> str:
    """Canonical text of a segment scope: ``tier=premium,geo=eu`` (sorted); empty = all segments."""
    return ",".join(f"{k}={scope[k]}" for k in sorted(scope))


def control_key(flag: str, scope: dict[str, str]) -> str:
    label = scope_label(scope)
    return f"{flag}/{label}" if label else flag


class Severity(StrEnum):
    INFO = "info"
    WARN = "warn"
    CRITICAL = "critical"


class Alert(_Wire):
    """An alert for SREs. Carries evidence and redacted excerpts, never raw input/output text."""

    schema_: Literal["rollguard.alert/v1"] = Field(default=ALERT_SCHEMA, alias="schema")
    alert_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    ts: datetime = Field(default_factory=utcnow)
    severity: Severity
    kind: str  # guard | criterion | srm | drift | system
    feature: str
    variant: str | None = None
    segment: dict[str, str] = Field(default_factory=dict)
    title: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    command_id: str | None = None


class DLQRecord(_Wire):
    """A record rollguard could not use: the original bytes (base64 in JSON), where it came from, why."""

    schema_: Literal["rollguard.dlq/v1"] = Field(default=DLQ_SCHEMA, alias="schema")
    ts: datetime = Field(default_factory=utcnow)
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes
    size: int  # of the original record; ``value`` holds only its first DLQ_MAX_VALUE_BYTES when ``truncated``
    truncated: bool = False

    def to_bytes(self) -> bytes:
        body = self.model_dump(mode="json", by_alias=True)  # bytes -> base64 via ser_json_bytes
        return orjson.dumps(body)

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, ser_json_bytes="base64",
                              val_json_bytes="base64")


class DecisionRecord(_Wire):
    """Audit trail: every decision the policy took, with evidence and the spec version it applied."""

    schema_: Literal["rollguard.decision/v1"] = Field(default=DECISION_SCHEMA, alias="schema")
    ts: datetime = Field(default_factory=utcnow)
    feature: str
    spec_version: str
    decision: str
    scope: dict[str, str] = Field(default_factory=dict)
    criterion: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    command_id: str | None = None
    event_time: datetime | None = Field(default=None, description="the data's clock when decided (replayable)")


class ControlRequest(_Wire):
    """An operator's request (``rollguard pause|resume|rollback|promote``), sent on the partials topic keyed by
    feature so the analysis applies it in order with the feature's own decisions (one ``seq`` per flag).
    Write access to that topic is therefore as sensitive as the signing key's: restrict it by ACL."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    schema_: Literal["rollguard.request/v1"] = Field(default=REQUEST_SCHEMA, alias="schema")
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    feature: Label
    action: Literal["pause", "resume", "rollback", "promote"]
    scope: dict[str, str] = Field(default_factory=dict)
    reason: str = Field(min_length=1)
    requested_by: str = Field(min_length=1)
    ts: datetime = Field(default_factory=utcnow)


# ---------------------------------------------------------------------------------------------- codec

_KIND_BY_SCHEMA: dict[str, type[_Wire]] = {
    RESPONSE_SCHEMA: ResponseEvent,
    OUTCOME_SCHEMA: OutcomeEvent,
    COMMAND_SCHEMA: Command,
    ALERT_SCHEMA: Alert,
    DECISION_SCHEMA: DecisionRecord,
}


#: schema -> the model's pydantic-core validator (``model_validate`` is a Python wrapper around it, ~0.3 µs a
#: record on the ingest path)
_VALIDATORS: dict[str, Any] = {
    schema: model.__pydantic_validator__.validate_python for schema, model in _KIND_BY_SCHEMA.items()
}


def encode(model: BaseModel) -> bytes:
    """The one encoder: orjson over pydantic's JSON-mode dump (by alias, so ``schema`` is on the wire)."""
    return orjson.dumps(model.model_dump(mode="json", by_alias=True, exclude_none=False))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or "<root>"
    return f"{loc}: {err['msg']}"


def decode(raw: bytes | None, *, max_bytes: int = 1_048_576,
           expect: tuple[str, ...] = (RESPONSE_SCHEMA, OUTCOME_SCHEMA)) -> Any:
    """Decode one record into its model, or raise :class:`ContractError` with a short reason.

    >>> ev = decode(b'{"schema":"rollguard.outcome/v1","event_id":"e1","request_id":"r1",'
    ...             b'"ts":"2026-11-26T10:00:00Z","feature":"f","escalated":true}')
    >>> ev.escalated
    True
    >>> decode(b'{"schema":"rollguard.outcome/v9"}')
    Traceback (most recent call last):
    ...
    rollguard.contracts.ContractError: unsupported schema: 'rollguard.outcome/v9'
    """
    if raw is None:
        raise ContractError("empty record (tombstone)")
    if len(raw) > max_bytes:
        raise ContractError(f"record too large: {len(raw)} bytes > {max_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        kind = "invalid UTF-8" if "UTF-8" in text else "not JSON"
        raise ContractError(f"{kind}: {text[:160]}") from None
    if not isinstance(obj, dict):
        raise ContractError(f"not a JSON object: {type(obj).__name__}")
    schema = obj.get("schema")
    if not isinstance(schema, str):
        raise ContractError("missing schema")
    validate = _VALIDATORS.get(schema)
    if validate is None or schema not in expect:
        raise ContractError(f"unsupported schema: {schema[:80]!r}")
    try:
        return validate(obj)
    except ValidationError as exc:
        raise ContractError(f"invalid {schema}: {_first_error(exc)}") from None
    except (RecursionError, ValueError, TypeError) as exc:  # pathological nesting and friends
        raise ContractError(f"invalid {schema}: {type(exc).__name__}") from None


def decode_command(raw: bytes | None) -> Command:
    cmd: Command = decode(raw, expect=(COMMAND_SCHEMA,))
    return cmd


def decode_alert(raw: bytes | None) -> Alert:
    alert: Alert = decode(raw, expect=(ALERT_SCHEMA,))
    return alert


def decode_dlq(raw: bytes) -> DLQRecord:
    return DLQRecord.model_validate_json(raw)

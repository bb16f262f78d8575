from __future__ import annotations

import orjson
import pytest

from rollguard.contracts import (
    Alert,
    Command,
    ContractError,
    DLQRecord,
    OutcomeEvent,
    ResponseEvent,
    Severity,
    control_key,
    decode,
    decode_command,
    decode_dlq,
)

RESPONSE = {
    "schema": "rollguard.response/v1", "event_id": "e1", "request_id": "r-123", "ts": "2026-11-26T10:00:00.123Z",
    "feature": "support-reply", "variant": "canary", "mode": "live",
    "segment": {"tier": "premium", "geo": "eu", "use_case": "billing"}, "model": "m-2", "prompt_version": "v7",
    "input": "hi", "output": "hello", "latency_ms": 812.5, "usage": {"input_tokens": 512, "output_tokens": 128},
    "cost_usd": 0.0021, "error": None, "fallback": False, "refused": None, "attributes": {},
}


def test_design_example_round_trips() -> None:
    ev = decode(orjson.dumps(RESPONSE))
    assert isinstance(ev, ResponseEvent)
    assert ev.usage.output_tokens == 128 and ev.segment["tier"] == "premium"
    again = decode(ev.to_bytes())
    assert again == ev
    assert orjson.loads(ev.to_bytes())["schema"] == "rollguard.response/v1"


def test_outcome_decodes() -> None:
    raw = orjson.dumps({"schema": "rollguard.outcome/v1", "event_id": "o1", "request_id": "r-123",
                        "ts": "2026-11-26T10:04:10Z", "feature": "support-reply", "task_success": True,
                        "escalated": False, "feedback": None})
    ev = decode(raw)
    assert isinstance(ev, OutcomeEvent) and ev.task_success is True


@pytest.mark.parametrize(("raw", "reason"), [
    (b"not json", "not JSON"),
    (b"\xff\xfe{}", "invalid UTF-8"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"a": 1}', "missing schema"),
    (b'{"schema": "rollguard.response/v2"}', "unsupported schema"),
    (b'{"schema": "rollguard.command/v1"}', "unsupported schema"),  # not accepted on input topics
    (orjson.dumps({**RESPONSE, "latency_ms": "fast"}), "latency_ms"),
    (orjson.dumps({k: v for k, v in RESPONSE.items() if k != "request_id"}), "request_id: Field required"),
    (orjson.dumps({**RESPONSE, "segment": {f"k{i}": "v" for i in range(40)}}), "segment"),
    (orjson.dumps({**RESPONSE, "mode": "sideways"}), "mode"),
    (b"[" * 3000 + b"]" * 3000, "not JSON"),
    (None, "tombstone"),
])
def test_bad_records_name_their_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(ContractError) as info:
        decode(raw)
    assert reason in info.value.reason


def test_size_limit() -> None:
    with pytest.raises(ContractError, match="too large"):
        decode(orjson.dumps({**RESPONSE, "output": "x" * 2000}), max_bytes=1000)


def test_dlq_record_keeps_original_bytes() -> None:
    raw = b"\xff\x00 garbage"
    rec = DLQRecord(reason="not JSON", topic="t", partition=2, offset=9, key=b"k", value=raw, size=len(raw))
    back = decode_dlq(rec.to_bytes())
    assert back.value == raw and back.key == b"k" and back.offset == 9


def test_command_key_and_signing_payload_exclude_signature() -> None:
    cmd = Command(command_id="c1", seq=1, flag="f", feature="x", action="rollback", variant="canary",
                  scope={"tier": "premium"}, reason="r")
    assert cmd.control_key == "f/tier=premium" == control_key("f", {"tier": "premium"})
    signed = cmd.model_copy(update={"signature": "abc"})
    assert signed.signing_payload() == cmd.signing_payload()
    assert decode_command(signed.to_bytes()) == signed


def test_alert_schema_has_no_text_fields() -> None:
    fields = set(Alert.model_fields)
    assert not fields & {"input", "output", "prompt", "response"}
    a = Alert(severity=Severity.CRITICAL, kind="guard", feature="f", title="t")
    assert orjson.loads(a.to_bytes())["schema"] == "rollguard.alert/v1"

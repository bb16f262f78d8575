"""RollguardProvider: evaluation follows control state, reasons and metadata, events on every change."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent, ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from rollguard.client.flags import FlagConfig
from rollguard.client.openfeature import RollguardProvider, segment_of
from rollguard.client.subscriber import ControlState
from tests.unit.client.helpers import FLAG, PREMIUM, FakeSubscriber, cmd

FLAGS = {FLAG: FlagConfig("baseline", "canary", default_weight=0.0)}


def ctx(key: str | None, **attrs: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=key, attributes=attrs)


@pytest.fixture
def wired() -> tuple[FakeSubscriber, RollguardProvider, list[tuple[ProviderEvent, ProviderEventDetails]]]:
    sub = FakeSubscriber()
    provider = RollguardProvider(sub, FLAGS)  # type: ignore[arg-type]
    events: list[tuple[ProviderEvent, ProviderEventDetails]] = []
    provider.attach(lambda p, ev, details: events.append((ev, details)))
    return sub, provider, events


def share(provider: RollguardProvider, tier: str, n: int = 4000) -> float:
    hits = sum(provider.resolve_boolean_details(FLAG, False, ctx(f"u{i}", tier=tier)).value for i in range(n))
    return hits / n


def test_evaluation_follows_state_with_reasons(wired: Any) -> None:
    sub, provider, events = wired
    d = provider.resolve_string_details(FLAG, "x", ctx("u1", tier="premium"))
    assert (d.value, d.reason, d.variant) == ("baseline", Reason.DEFAULT, "baseline")
    assert "command_id" not in d.flag_metadata

    sub.deliver(cmd(1, "set_weight", {}, 0.5))
    assert share(provider, "premium") == pytest.approx(0.5, abs=0.04)
    d = provider.resolve_string_details(FLAG, "x", ctx("u1", tier="premium"))
    assert d.reason == Reason.SPLIT and d.flag_metadata["command_id"] == f"{FLAG}-c1"
    assert d.flag_metadata["weight"] == 0.5

    sub.deliver(cmd(2, "rollback", PREMIUM, 0.0))
    assert share(provider, "premium") == 0.0
    assert share(provider, "free") == pytest.approx(0.5, abs=0.04)
    d = provider.resolve_string_details(FLAG, "x", ctx("u1", tier="premium"))
    assert (d.value, d.reason) == ("baseline", Reason.TARGETING_MATCH)
    assert d.flag_metadata["command_id"] == f"{FLAG}-c2" and d.flag_metadata["scope"] == "tier=premium"
    assert d.flag_metadata["last_command_id"] == f"{FLAG}-c2"
    free = provider.resolve_string_details(FLAG, "x", ctx("u1", tier="free"))
    assert free.flag_metadata["command_id"] == f"{FLAG}-c1"
    assert free.flag_metadata["last_command_id"] == f"{FLAG}-c2"

    sub.deliver(cmd(3, "set_weight", {}, 1.0))
    d = provider.resolve_string_details(FLAG, "x", ctx("u1", tier="free"))
    assert (d.value, d.reason) == ("canary", Reason.TARGETING_MATCH)

    assert [e for e, _ in events] == [ProviderEvent.PROVIDER_CONFIGURATION_CHANGED] * 3
    assert all(details.flags_changed == [FLAG] for _, details in events)
    assert [details.metadata["command_id"] for _, details in events] == [f"{FLAG}-c{i}" for i in (1, 2, 3)]


def test_same_user_same_variant_and_boolean_agrees_with_string(wired: Any) -> None:
    sub, provider, _ = wired
    sub.deliver(cmd(1, "set_weight", {}, 0.3))
    for i in range(300):
        c = ctx(f"user-{i}", tier="free")
        s = provider.resolve_string_details(FLAG, "x", c).value
        assert s == provider.resolve_string_details(FLAG, "x", c).value
        assert provider.resolve_boolean_details(FLAG, False, c).value is (s == "canary")


def test_no_event_for_rejected_or_unconfigured_commands(wired: Any) -> None:
    sub, _, events = wired
    sub.deliver(cmd(1, "set_weight", {}, 0.5))
    assert not sub.deliver(cmd(1, "set_weight", {}, 0.9, command_id="other"))  # stale seq: rejected
    sub.deliver(cmd(2, "rollback", {}, 0.0, flag="someone-elses-flag"))
    assert len(events) == 1


def test_errors_unknown_flag_missing_key_wrong_type(wired: Any) -> None:
    sub, provider, _ = wired
    assert provider.resolve_string_details("nope", "dflt").error_code == ErrorCode.FLAG_NOT_FOUND
    assert provider.resolve_string_details("nope", "dflt").value == "dflt"
    # at weight 0 nobody needs bucketing, so no key is fine
    assert provider.resolve_string_details(FLAG, "x", ctx(None)).value == "baseline"
    sub.deliver(cmd(1, "set_weight", {}, 0.5))
    d = provider.resolve_string_details(FLAG, "x", ctx(None))
    assert d.error_code == ErrorCode.TARGETING_KEY_MISSING
    assert provider.resolve_integer_details(FLAG, 1).error_code == ErrorCode.TYPE_MISMATCH
    assert provider.resolve_float_details(FLAG, 1.0).error_code == ErrorCode.TYPE_MISMATCH
    assert provider.resolve_object_details(FLAG, {}).error_code == ErrorCode.TYPE_MISMATCH


def test_seeds_from_a_bare_state_and_accepts_commands_by_hand() -> None:
    state = ControlState(None)
    state.offer(cmd(1, "set_weight", {}, 1.0).to_bytes())
    provider = RollguardProvider(state, FLAGS)
    assert provider.resolve_string_details(FLAG, "x", ctx("u")).value == "canary"
    assert provider.on_command(cmd(2, "rollback", {}, 0.0))
    assert not provider.on_command(cmd(2, "rollback", {}, 0.0))
    assert provider.resolve_string_details(FLAG, "x", ctx("u")).value == "baseline"


def test_segment_of_reads_scalar_attributes() -> None:
    c = ctx("u", tier="premium", beta=True, n=3, nested={"a": 1})
    assert segment_of(c) == {"tier": "premium", "beta": "true", "n": "3"}
    assert segment_of(None) == {}


def test_through_the_sdk_client_with_handlers() -> None:
    sub = FakeSubscriber()
    provider = RollguardProvider(sub, FLAGS)  # type: ignore[arg-type]
    domain = "rollguard-unit"
    api.set_provider_and_wait(provider, domain)
    got = threading.Event()
    received: list[EventDetails] = []

    def handler(details: EventDetails) -> None:
        received.append(details)
        got.set()

    client = api.get_client(domain)
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
    try:
        assert client.get_string_value(FLAG, "x", ctx("u1", tier="premium")) == "baseline"
        sub.deliver(cmd(1, "set_weight", {}, 1.0))
        assert got.wait(5), "configuration-changed handler did not run"
        assert received[0].flags_changed == [FLAG] and received[0].provider_name == "rollguard"
        assert client.get_string_value(FLAG, "x", ctx("u1", tier="premium")) == "canary"
        assert client.get_boolean_value(FLAG, False, ctx("u1")) is True
    finally:
        client.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
        api.clear_providers()
    assert sub.on_change is None, "shutdown unhooks the provider from the subscriber"


def test_concurrent_updates_and_evaluations_do_not_tear() -> None:
    sub = FakeSubscriber()
    provider = RollguardProvider(sub, FLAGS)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    stop = threading.Event()

    def evaluate() -> None:
        try:
            while not stop.is_set():
                d = provider.resolve_string_details(FLAG, "x", ctx("u7", tier="premium"))
                assert d.value in ("baseline", "canary") and d.error_code is None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(3)]
    for t in threads:
        t.start()
    for seq in range(1, 400):
        action = ("set_weight", "rollback", "pause", "resume")[seq % 4]
        sub.deliver(cmd(seq, action, PREMIUM if seq % 3 else {}, 0.0 if action == "rollback" else 0.5))
    stop.set()
    for t in threads:
        t.join()
    assert not errors

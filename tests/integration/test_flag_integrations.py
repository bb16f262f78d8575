"""Flag integrations on the real broker: signed commands on the control topic drive an OpenFeature client,
a flagd file and a plain callback; forged and replayed commands change nothing."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.flag_evaluation import Reason

from rollguard.client import ControlSubscriber
from rollguard.client.flagd import FlagdWriter
from rollguard.client.flags import FlagConfig, FlagRollout, follow
from rollguard.client.openfeature import RollguardProvider
from rollguard.config import Settings
from rollguard.contracts import Command
from rollguard.signing import Signer, Verifier
from rollguard.topics import create_topics
from tests.integration.harness import Keys, fresh_settings

FLAG = "support-reply-model"
FLAGS = {FLAG: FlagConfig("baseline", "canary", default_weight=0.0)}
PREMIUM = {"tier": "premium"}
USERS = [f"user-{i}" for i in range(2000)]


def command(seq: int, action: str, scope: dict[str, str], weight: float | None) -> Command:
    return Command(command_id=f"it-{FLAG}-{seq}-{action}", seq=seq, flag=FLAG, feature="support-reply",
                   action=action, variant="canary", scope=scope, weight=weight, reason="integration test")


class Wire:
    """Produces raw command bytes to the control topic exactly as the worker does (key = control key)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.control
        self.producer = Producer(settings.librdkafka(**{"enable.idempotence": True}))

    def send(self, key: str, value: bytes) -> None:
        self.producer.produce(self.topic, key=key.encode(), value=value)
        assert self.producer.flush(30) == 0

    def publish(self, cmd: Command) -> bytes:
        raw = cmd.to_bytes()
        self.send(cmd.control_key, raw)
        return raw


class Events:
    """Collects PROVIDER_CONFIGURATION_CHANGED (handlers run on the SDK's executor threads)."""

    def __init__(self) -> None:
        self.items: list[EventDetails] = []
        self._cond = threading.Condition()

    def __call__(self, details: EventDetails) -> None:
        with self._cond:
            self.items.append(details)
            self._cond.notify_all()

    def wait_count(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.items) >= n, timeout)


def variants(tier: str) -> list[str]:
    client = api.get_client()
    return [client.get_string_value(FLAG, "default", EvaluationContext(u, {"tier": tier})) for u in USERS]


def canary_share(tier: str) -> float:
    return variants(tier).count("canary") / len(USERS)


def targeting(path: Path) -> Any:
    return json.loads(path.read_text())["flags"][FLAG]["targeting"]


def test_openfeature_and_flagd_follow_signed_commands(broker: str, keys: Keys, tmp_path: Path) -> None:
    settings = fresh_settings()
    create_topics(settings)
    signer = Signer.from_base64(keys.key_id, keys.private)
    wire = Wire(settings)
    sub = ControlSubscriber(settings, verifier=Verifier({keys.key_id: keys.public}))
    flag_file = tmp_path / "flags.flagd.json"
    provider = RollguardProvider(sub, FLAGS)
    writer = FlagdWriter(flag_file, FLAGS, sub)
    events = Events()
    api.set_provider_and_wait(provider)
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events)
    try:
        free_user = EvaluationContext("u1", {"tier": "free"})
        details = api.get_client().get_string_details(FLAG, "default", free_user)
        assert (details.value, details.reason) == ("baseline", Reason.DEFAULT)
        assert targeting(flag_file) == {"if": [True, "baseline"]}

        # 1. the stage weight arrives, then widens
        c1 = signer.sign(command(1, "set_weight", {}, 0.2))
        c1_raw = wire.publish(c1)
        assert sub.wait_for(lambda s: s.last_seq.get(FLAG) == 1, timeout=30)
        assert events.wait_count(1)
        assert canary_share("premium") == pytest.approx(0.2, abs=0.04)
        c2 = signer.sign(command(2, "set_weight", {}, 0.5))
        wire.publish(c2)
        assert sub.wait_for(lambda s: s.last_seq.get(FLAG) == 2, timeout=30)
        assert events.wait_count(2)
        assert canary_share("premium") == pytest.approx(0.5, abs=0.04)
        assert canary_share("free") == pytest.approx(0.5, abs=0.04)
        assert targeting(flag_file) == {"fractional": [["canary", 50], ["baseline", 50]]}

        # 2. premium-only rollback: premium all baseline, the others keep their split (and their arms)
        free_before = variants("free")
        c3 = signer.sign(command(3, "rollback", PREMIUM, 0.0))
        wire.publish(c3)
        assert sub.wait_for(lambda s: c3.control_key in s.latest, timeout=30)
        assert events.wait_count(3)
        assert canary_share("premium") == 0.0
        assert variants("free") == free_before
        d = api.get_client().get_string_details(FLAG, "x", EvaluationContext("u1", {"tier": "premium"}))
        assert (d.value, d.reason) == ("baseline", Reason.TARGETING_MATCH)
        assert d.flag_metadata["command_id"] == c3.command_id
        assert [e.flags_changed for e in events.items] == [[FLAG]] * 3
        assert [e.metadata["command_id"] for e in events.items] == [c.command_id for c in (c1, c2, c3)]
        assert targeting(flag_file) == {"if": [{"==": [{"var": "tier"}, "premium"]}, "baseline",
                                               {"fractional": [["canary", 50], ["baseline", 50]]}]}
        file_after_rollback = flag_file.read_bytes()

        # 3. a forged command (signature altered) and a replay of c1's exact bytes are both refused
        forged = signer.sign(command(4, "set_weight", {}, 1.0))
        sig = bytearray(base64.b64decode(forged.signature or ""))
        sig[0] ^= 0xFF
        forged = forged.model_copy(update={"signature": base64.b64encode(bytes(sig)).decode()})
        wire.publish(forged)
        wire.send(c1.control_key, c1_raw)
        assert sub.wait_for(lambda s: len(s.rejections) >= 2, timeout=30)
        reasons = [r.reason for r in sub.state.rejections]
        assert reasons == ["bad signature (forged or altered)", "replayed command_id"]
        assert sub.state.accepted == 3
        assert canary_share("premium") == 0.0 and variants("free") == free_before
        assert flag_file.read_bytes() == file_after_rollback and writer.writes == 4
        assert len(events.items) == 3

        # 4. the channel is still live, and the forged command did not use up seq 4
        c4 = signer.sign(command(4, "resume", PREMIUM, None))
        wire.publish(c4)
        assert sub.wait_for(lambda s: s.last_seq.get(FLAG) == 4, timeout=30)
        assert events.wait_count(4)
        assert canary_share("premium") == pytest.approx(0.5, abs=0.04)
        assert targeting(flag_file) == {"fractional": [["canary", 50], ["baseline", 50]]}
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, events)
        api.clear_providers()
        writer.close()
        sub.close()


def test_plain_callback_follow_helper(broker: str, keys: Keys) -> None:
    settings = fresh_settings()
    create_topics(settings)
    signer = Signer.from_base64(keys.key_id, keys.private)
    wire = Wire(settings)
    wire.publish(signer.sign(command(1, "set_weight", {}, 0.25)))  # before the service starts: replayed
    seen: list[tuple[int, float, float]] = []
    done = threading.Event()

    def on_rollout_change(rollout: FlagRollout, cmd: Command) -> None:
        seen.append((cmd.seq, rollout.weight_for(PREMIUM), rollout.weight_for({"tier": "free"})))
        if cmd.seq == 2:
            done.set()

    follower = follow(settings, Verifier({keys.key_id: keys.public}), FLAGS, on_rollout_change)
    try:
        wire.publish(signer.sign(command(2, "rollback", PREMIUM, 0.0)))
        assert done.wait(30), "callback did not see the rollback"
        assert seen == [(1, 0.25, 0.25), (2, 0.0, 0.25)]
        current = follower.rollout(FLAG)
        assert current is not None and current.weight_for(PREMIUM) == 0.0
    finally:
        follower.close()

"""Shared builders for client adapter tests: commands and a broker-free stand-in for ControlSubscriber."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollguard.client.subscriber import ControlState
from rollguard.contracts import Command

FLAG = "support-reply-model"
PREMIUM = {"tier": "premium"}


def cmd(seq: int, action: str, scope: dict[str, str] | None = None, weight: float | None = None,
        flag: str = FLAG, **kw: Any) -> Command:
    return Command(command_id=kw.pop("command_id", f"{flag}-c{seq}"), seq=seq, flag=flag,
                   feature="support-reply", action=action, variant="canary", scope=scope or {}, weight=weight,
                   reason="test", **kw)


class FakeSubscriber:
    """What adapters use of ControlSubscriber (``state`` and ``on_change``), fed by hand instead of Kafka."""

    def __init__(self) -> None:
        self.state = ControlState(None)
        self.on_change: Callable[[Command], None] | None = None

    def deliver(self, command: Command) -> bool:
        accepted = self.state.offer(command.to_bytes(), key=command.control_key)
        if accepted is not None and self.on_change is not None:
            self.on_change(accepted)
        return accepted is not None

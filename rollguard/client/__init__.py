"""Client SDK: what producing services and flag services embed."""

from rollguard.client.producer import EventProducer
from rollguard.client.subscriber import ControlState, ControlSubscriber, Rejection

__all__ = ["ControlState", "ControlSubscriber", "EventProducer", "Rejection"]

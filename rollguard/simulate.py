"""Seeded traffic with known ground truth: what the demo, the tests and the scenario bench feed rollguard.

A ``Scenario`` names an injected regression (which arm, which segment, which metric, from which event on) so
every run states its ground truth. Events are contract dicts, ready for ``EventProducer`` or a JSONL file.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rollguard.contracts import OUTCOME_SCHEMA, RESPONSE_SCHEMA

TIERS = (("free", 0.55), ("pro", 0.30), ("premium", 0.15))
GEOS = (("us", 0.5), ("eu", 0.35), ("apac", 0.15))
USE_CASES = (("billing", 0.3), ("technical", 0.4), ("account", 0.2), ("other", 0.1))

_ANSWERS = (
    "Thanks for reaching out. I have checked your account and the invoice from last month was issued twice; "
    "the duplicate charge has been reversed and should appear within 3-5 business days.",
    "To reset the integration, open Settings > Connections, choose the workspace and click Reconnect. "
    "If the token has expired you will be asked to sign in again.",
    "Your plan includes 5 seats. You can add more under Billing > Seats; the change is prorated for the "
    "rest of the cycle and shows on the next invoice.",
    "The error code 504 means the upstream service timed out. Retrying after a minute usually works; if it "
    "persists, please send us the request id from the response header.",
    '{"intent": "refund", "confidence": 0.92, "next_step": "confirm_amount"}',
)
_REFUSAL = "I'm sorry, but I can't help with that request."
_PROMPTS = (
    "Why was I charged twice this month?", "How do I reconnect the Slack integration?",
    "Can I add more seats to my plan?", "What does error 504 mean?", "Classify this ticket: refund please",
)


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    r = rng.random()
    acc = 0.0
    for name, w in table:
        acc += w
        if r < acc:
            return name
    return table[-1][0]


@dataclass(frozen=True)
class Regression:
    """Ground truth of an injected change: ``arm`` gets ``metric`` shifted inside ``segment`` from ``start``."""

    metric: str  # escalation_rate | error_rate | refusal_rate | task_success_rate | latency | cost | leak
    value: float  # new rate, or multiplier for latency/cost
    segment: dict[str, str] = field(default_factory=dict)
    arm: str = "canary"
    start: int = 0  # event index from which it applies

    def applies(self, i: int, variant: str, seg: dict[str, str]) -> bool:
        return i >= self.start and variant == self.arm and all(seg.get(k) == v for k, v in self.segment.items())


@dataclass
class Traffic:
    """Seeded generator of response (+ outcome) events for one feature and two arms."""

    feature: str = "support-reply"
    seed: int = 7
    canary_weight: float = 0.25
    baseline: str = "baseline"
    candidate: str = "canary"
    escalation_rate: float = 0.03
    task_success_rate: float = 0.85
    error_rate: float = 0.01
    refusal_rate: float = 0.01
    latency_ms: float = 800.0
    cost_usd: float = 0.002
    outcome_share: float = 1.0
    outcome_delay_s: float = 30.0
    events_per_s: float = 200.0  # event-time spacing
    shadow: bool = False  # shadow stage: every request served by the baseline and mirrored to the candidate
    start: datetime = field(default_factory=lambda: datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    regressions: list[Regression] = field(default_factory=list)

    def events(self, n: int) -> Iterator[dict[str, Any]]:
        """Yield n responses, each followed by its outcome (with a later ``ts``), in production order."""
        rng = random.Random(self.seed)
        step = 1.0 / self.events_per_s
        for i in range(n):
            variant = self.baseline if self.shadow else (
                self.candidate if rng.random() < self.canary_weight else self.baseline)
            seg = {"tier": _pick(rng, TIERS), "geo": _pick(rng, GEOS), "use_case": _pick(rng, USE_CASES)}
            rates = {"escalation_rate": self.escalation_rate, "task_success_rate": self.task_success_rate,
                     "error_rate": self.error_rate, "refusal_rate": self.refusal_rate, "latency": 1.0,
                     "cost": 1.0, "leak": 0.0, "disagree": 0.02}
            for r in self.regressions:
                if r.applies(i, variant, seg):
                    rates[r.metric] = r.value
            ts = self.start + timedelta(seconds=i * step)
            rid = f"r-{self.seed}-{i}"
            error = rng.random() < rates["error_rate"]
            refused = not error and rng.random() < rates["refusal_rate"]
            output = "" if error else (_REFUSAL if refused else rng.choice(_ANSWERS))
            if rng.random() < rates["leak"]:
                output += " Use key AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
            lat = rng.lognormvariate(math.log(self.latency_ms), 0.35) * rates["latency"]
            in_tok = rng.randint(80, 600)
            out_tok = max(1, len(output) // 4)
            response: dict[str, Any] = {
                "schema": RESPONSE_SCHEMA, "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "request_id": rid,
                "ts": ts.isoformat(), "feature": self.feature, "variant": variant, "mode": "live", "segment": seg,
                "model": "m-2" if variant == self.candidate else "m-1", "prompt_version": "v7",
                "input": rng.choice(_PROMPTS), "output": output, "latency_ms": round(lat, 2),
                "usage": {"input_tokens": in_tok, "output_tokens": out_tok},
                "cost_usd": round((in_tok * 1e-6 + out_tok * 4e-6) * 1.5 * rates["cost"], 7),
                "error": "upstream_timeout" if error else None, "fallback": False, "refused": None,
                "attributes": {},
            }
            yield response
            if self.shadow:
                mirror: dict[str, Any] = dict(response)
                shadow_rates = dict(rates)
                for r in self.regressions:
                    if r.applies(i, self.candidate, seg):
                        shadow_rates[r.metric] = r.value
                if rng.random() < shadow_rates["disagree"]:
                    mirror["output"] = rng.choice([a for a in _ANSWERS if a != output] or _ANSWERS)
                mirror.update(event_id=str(uuid.UUID(int=rng.getrandbits(128))), variant=self.candidate,
                              mode="shadow", model="m-2",
                              latency_ms=round(response["latency_ms"] * shadow_rates["latency"], 2))
                yield mirror
            if rng.random() < self.outcome_share:
                yield {
                    "schema": OUTCOME_SCHEMA, "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "request_id": rid, "ts": (ts + timedelta(seconds=self.outcome_delay_s)).isoformat(),
                    "feature": self.feature, "task_success": rng.random() < rates["task_success_rate"],
                    "escalated": rng.random() < rates["escalation_rate"], "feedback": None,
                }


def parse_regression(text: str) -> Regression:
    """``METRIC=VALUE[@k=v,k=v][+START]``, e.g. ``escalation_rate=0.15@tier=premium+1000``."""
    start = 0
    if "+" in text:
        text, _, st = text.rpartition("+")
        start = int(st)
    head, _, where = text.partition("@")
    metric, sep, value = head.partition("=")
    if not sep:
        raise ValueError(f"expected METRIC=VALUE, got {head!r}")
    segment = dict(kv.split("=", 1) for kv in where.split(",") if kv) if where else {}
    return Regression(metric.strip(), float(value), segment, start=start)

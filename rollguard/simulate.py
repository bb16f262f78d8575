"""Seeded traffic with known ground truth: what the demo, the tests and the scenario bench feed rollguard.

A ``Regression`` names an injected change (which arm, which segment, which metric, from which event on) and a
``Scenario`` (``SCENARIOS``) is a named preset: a ``Traffic`` builder plus its ``GroundTruth`` (expected action,
scope, metric, onset). Events are contract dicts, ready for ``EventProducer`` or a JSONL file. The default
``Traffic`` (``text="basic"``) is kept bit-for-bit stable for the tests that pin its seeds; the presets use
``text="rich"`` (varied lengths, JSON outputs, PII and refusals at base rates) from a separate text RNG.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from rollguard.contracts import OUTCOME_SCHEMA, RESPONSE_SCHEMA

Table = tuple[tuple[str, float], ...]

TIERS: Table = (("free", 0.55), ("pro", 0.30), ("premium", 0.15))
GEOS: Table = (("us", 0.5), ("eu", 0.35), ("apac", 0.15))
USE_CASES: Table = (("billing", 0.3), ("technical", 0.4), ("account", 0.2), ("other", 0.1))

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

# ------------------------------------------------------------------------------------------ rich text
_RICH_OPENERS = ("Thanks for reaching out.", "Happy to help with that.", "Good question.", "",
                 "Thanks for your patience.", "I looked into this for you.")
_RICH_BODY = {
    "billing": (
        "The invoice from last month was issued twice and the duplicate charge has been reversed.",
        "Refunds usually appear on your statement within 3-5 business days.",
        "You can download every invoice as a PDF under Billing > History.",
        "Your plan renews on the first of each month and the change is prorated.",
        "Annual plans are billed up front with a 15% discount compared with monthly billing.",
        "Taxes are calculated from the billing address on file, so please check that it is current.",
    ),
    "technical": (
        "Open Settings > Connections, choose the workspace and click Reconnect.",
        "The error code 504 means the upstream service timed out; retrying after a minute usually works.",
        "Webhooks are retried with exponential backoff for up to 24 hours.",
        "If the token has expired you will be asked to sign in again.",
        "Rate limits are 600 requests per minute per workspace; the response header shows what is left.",
        "Clearing the browser cache and signing in again fixes most display problems.",
        "Please send us the request id from the response header so we can trace the call.",
    ),
    "account": (
        "You can add seats under Billing > Seats and remove them at the end of the cycle.",
        "Two-factor authentication can be turned on under Profile > Security.",
        "An owner can transfer the workspace from Settings > Members.",
        "Deleted projects stay recoverable for 30 days.",
        "Single sign-on is available on the premium plan and is configured by an administrator.",
    ),
    "other": (
        "Our support team is available around the clock on weekdays.",
        "You can find the full changelog on the status page.",
        "Feature requests are reviewed every two weeks by the product team.",
        "I have passed your feedback to the team that owns this area.",
    ),
    "legal": (
        "Data processing terms are available as a signed addendum on request.",
        "We keep audit logs for one year on the premium plan.",
        "Customer data is stored in the region you chose when the workspace was created.",
    ),
}
_RICH_PROMPTS = {
    "billing": ("Why was I charged twice this month?", "Can I get a refund for the unused seats?",
                "where do i find my invoices", "Our finance team needs the VAT number on the invoice, how?"),
    "technical": ("How do I reconnect the Slack integration?", "What does error 504 mean?",
                  "webhooks stopped arriving since yesterday, any outage?",
                  "The API returns 429 when we sync about 2,000 records at once. What are the limits?"),
    "account": ("Can I add more seats to my plan?", "How do I turn on 2FA for everyone?",
                "I need to transfer ownership of the workspace to a colleague who joined last week."),
    "other": ("hi", "Do you have a status page?", "I'd like to suggest a feature for the dashboard."),
    "legal": ("Where is our data stored?", "Can we get a DPA signed?"),
}
_RICH_REFUSALS = ("I'm sorry, but I can't help with that request.",
                  "I can't assist with that. Please contact your account administrator.",
                  "Unfortunately I'm not able to share that information.")
_PII = ("I have sent a confirmation to {name}@example.com.", "Our agent will call you back on +1 415 555 {num:04d}.",
        "The card ending in {num:04d} was charged; a receipt went to {name}@example.com.")
_NAMES = ("jane.doe", "m.rossi", "li.wei", "a.kumar", "s.muller")
_INTENTS = ("refund", "bug_report", "how_to", "account_change", "cancel", "other")


def _rich_prompt(trng: random.Random, use_case: str) -> str:
    base = trng.choice(_RICH_PROMPTS.get(use_case, _RICH_PROMPTS["other"]))
    if trng.random() < 0.15:  # pasted context makes some prompts long
        base += " Context: " + " ".join(trng.choice(_RICH_BODY["technical"]) for _ in range(trng.randint(3, 12)))
    return base


def _rich_answer(trng: random.Random, use_case: str, pii: bool) -> str:
    """A support answer: usually 1-6 sentences, sometimes long, ~8 % structured JSON."""
    if trng.random() < 0.08:
        return orjson.dumps({"intent": trng.choice(_INTENTS), "confidence": round(trng.uniform(0.5, 0.99), 2),
                             "next_step": trng.choice(("confirm_amount", "escalate", "send_docs", "close"))}).decode()
    body = _RICH_BODY.get(use_case, _RICH_BODY["other"])
    k = trng.randint(8, 20) if trng.random() < 0.05 else trng.randint(1, 6)
    parts = [trng.choice(_RICH_OPENERS)] + [trng.choice(body) for _ in range(k)]
    if pii:
        parts.append(trng.choice(_PII).format(name=trng.choice(_NAMES), num=trng.randint(0, 9999)))
    return " ".join(p for p in parts if p)


def _pick(rng: random.Random, table: Table) -> str:
    r = rng.random()
    acc = 0.0
    for name, w in table:
        acc += w
        if r < acc:
            return name
    return table[-1][0]


@dataclass(frozen=True)
class Regression:
    """Ground truth of an injected change: ``arm`` gets ``metric`` shifted inside ``segment`` from ``start``.

    ``arm="*"`` changes both arms (a property of the segment, not a regression). ``ramp`` > 0 moves the value
    linearly from its previous level to ``value`` over that many events (gradual drift); ``end`` stops a burst.
    """

    # escalation_rate | error_rate | refusal_rate | task_success_rate | latency | cost | tokens | leak | pii
    # | disagree (shadow)
    metric: str
    value: float  # new rate, or multiplier for latency/cost/tokens
    segment: dict[str, str] = field(default_factory=dict)
    arm: str = "canary"
    start: int = 0  # event index from which it applies
    ramp: int = 0
    end: int | None = None

    def applies(self, i: int, variant: str, seg: dict[str, str]) -> bool:
        return (i >= self.start and (self.end is None or i < self.end) and self.arm in (variant, "*")
                and all(seg.get(k) == v for k, v in self.segment.items()))

    def level(self, i: int, previous: float) -> float:
        """The metric's value at event ``i`` (``previous``: its value before this regression)."""
        if self.ramp <= 0:
            return self.value
        return previous + (self.value - previous) * min(1.0, (i - self.start + 1) / self.ramp)


@dataclass(frozen=True)
class MixShift:
    """From event ``start`` on, segment attribute ``attr`` is drawn from ``table`` (both arms alike)."""

    start: int
    attr: str
    table: Table


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
    #: segment tables (default: TIERS, GEOS, USE_CASES) and mid-stream mix changes
    tiers: Table = TIERS
    geos: Table = GEOS
    use_cases: Table = USE_CASES
    mix_shifts: list[MixShift] = field(default_factory=list)
    #: "basic" (fixed answers, stable for pinned tests) or "rich" (varied text from its own RNG)
    text: str = "basic"
    pii_rate: float = 0.004  # rich text only: share of answers quoting an e-mail, phone or card digits
    #: outcomes appear in the stream at their own event time (exponential delay, mean ``outcome_delay_s``);
    #: those due after the last response are never sent. False: each outcome follows its response.
    late_outcomes: bool = False

    def _tables(self, i: int) -> tuple[Table, Table, Table]:
        tables = {"tier": self.tiers, "geo": self.geos, "use_case": self.use_cases}
        for m in self.mix_shifts:
            if i >= m.start:
                tables[m.attr] = m.table
        return tables["tier"], tables["geo"], tables["use_case"]

    def events(self, n: int) -> Iterator[dict[str, Any]]:
        """Yield n responses and their outcomes (each with a later ``ts``), in production order."""
        rng = random.Random(self.seed)
        trng = random.Random(self.seed * 7919 + 17) if self.text == "rich" else None
        step = 1.0 / self.events_per_s
        pending: list[tuple[float, int, dict[str, Any]]] = []  # late outcomes: (ts, i, event)
        for i in range(n):
            ts = self.start + timedelta(seconds=i * step)
            while pending and pending[0][0] <= i * step:
                yield heapq.heappop(pending)[2]
            variant = self.baseline if self.shadow else (
                self.candidate if rng.random() < self.canary_weight else self.baseline)
            tiers, geos, use_cases = self._tables(i) if self.mix_shifts else (self.tiers, self.geos, self.use_cases)
            seg = {"tier": _pick(rng, tiers), "geo": _pick(rng, geos), "use_case": _pick(rng, use_cases)}
            rates = {"escalation_rate": self.escalation_rate, "task_success_rate": self.task_success_rate,
                     "error_rate": self.error_rate, "refusal_rate": self.refusal_rate, "latency": 1.0,
                     "cost": 1.0, "tokens": 1.0, "leak": 0.0, "pii": 0.0, "disagree": 0.02}
            for r in self.regressions:
                if r.applies(i, variant, seg):
                    rates[r.metric] = r.level(i, rates[r.metric])
            rid = f"r-{self.seed}-{i}"
            error = rng.random() < rates["error_rate"]
            refused = not error and rng.random() < rates["refusal_rate"]
            if trng is None:
                output = "" if error else (_REFUSAL if refused else rng.choice(_ANSWERS))
            else:
                pii = trng.random() < self.pii_rate or (rates["pii"] > 0 and trng.random() < rates["pii"])
                output = "" if error else (trng.choice(_RICH_REFUSALS) if refused
                                           else _rich_answer(trng, seg["use_case"], pii))
            if rng.random() < rates["leak"]:
                output += " Use key AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
            lat = rng.lognormvariate(math.log(self.latency_ms), 0.35) * rates["latency"]
            in_tok = rng.randint(80, 600)
            out_tok = max(1, len(output) // 4)
            if rates["tokens"] != 1.0:
                in_tok = int(in_tok * rates["tokens"])
                out_tok = int(out_tok * rates["tokens"])
            response: dict[str, Any] = {
                "schema": RESPONSE_SCHEMA, "event_id": str(uuid.UUID(int=rng.getrandbits(128))), "request_id": rid,
                "ts": ts.isoformat(), "feature": self.feature, "variant": variant, "mode": "live", "segment": seg,
                "model": "m-2" if variant == self.candidate else "m-1", "prompt_version": "v7",
                "input": rng.choice(_PROMPTS) if trng is None else _rich_prompt(trng, seg["use_case"]),
                "output": output, "latency_ms": round(lat, 2),
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
                        shadow_rates[r.metric] = r.level(i, shadow_rates[r.metric])
                if rng.random() < shadow_rates["disagree"]:
                    mirror["output"] = rng.choice([a for a in _ANSWERS if a != output] or _ANSWERS)
                mirror.update(event_id=str(uuid.UUID(int=rng.getrandbits(128))), variant=self.candidate,
                              mode="shadow", model="m-2",
                              latency_ms=round(response["latency_ms"] * shadow_rates["latency"], 2))
                yield mirror
            if rng.random() < self.outcome_share:
                delay = rng.expovariate(1.0 / self.outcome_delay_s) if self.late_outcomes else self.outcome_delay_s
                outcome = {
                    "schema": OUTCOME_SCHEMA, "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "request_id": rid, "ts": (ts + timedelta(seconds=delay)).isoformat(),
                    "feature": self.feature, "task_success": rng.random() < rates["task_success_rate"],
                    "escalated": rng.random() < rates["escalation_rate"], "feedback": None,
                }
                if self.late_outcomes:
                    heapq.heappush(pending, (i * step + delay, i, outcome))
                else:
                    yield outcome
        while pending and pending[0][0] <= (n - 1) * step:
            yield heapq.heappop(pending)[2]


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


# ---------------------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class GroundTruth:
    """What a correct guard does: ``action`` (rollback | pause | none) on ``scope`` for ``metric``.

    ``start`` is the response index from which the change exists (detections before it are false alarms).
    """

    action: str
    scope: dict[str, str] = field(default_factory=dict)
    metric: str = "none"
    start: int = 0

    @property
    def regression(self) -> bool:
        return self.action != "none"


#: spec criteria the scenario presets judge with (the shipped ``support-reply.yaml`` unless a preset overrides)
SHADOW_SPEC: dict[str, Any] = {
    "feature": "support-reply", "flag": "support-reply-model", "segment_by": ["tier", "use_case"],
    "stages": [{"name": "shadow", "mode": "shadow", "min_requests": 2000}, {"name": "canary-5", "weight": 0.05}],
    "criteria": [
        {"metric": "shadow_disagreement_rate", "max_increase": 0.10, "action": "pause"},
        {"metric": "shadow_guard_failure_rate", "max_increase": 0.01, "action": "pause"},
        {"metric": "shadow_latency_delta_ms", "max_increase": 100, "action": "pause"},
        {"metric": "escalation_rate", "max_increase": 0.01, "action": "rollback"},
    ],
}


@dataclass(frozen=True)
class Scenario:
    """A named preset: ``traffic(seed)`` builds the stream, ``truth`` states what should happen."""

    name: str
    description: str
    truth: GroundTruth
    build: Callable[[int], Traffic]
    n: int = 24_000  # response events (shadow: requests, each with a live and a shadow response)
    spec: dict[str, Any] | None = None  # None: rollguard/specs/support-reply.yaml
    extra_criteria: tuple[dict[str, Any], ...] = ()  # appended to the shipped spec's criteria

    def traffic(self, seed: int) -> Traffic:
        return self.build(seed)


def _rich(seed: int, **kw: Any) -> Traffic:
    return Traffic(seed=seed, text="rich", **kw)


#: Segments differ at baseline (both arms): premium users escalate more, wait longer and succeed less often.
SEGMENT_BASELINES = (
    Regression("escalation_rate", 0.05, {"tier": "premium"}, arm="*"),
    Regression("task_success_rate", 0.78, {"tier": "premium"}, arm="*"),
    Regression("latency", 1.3, {"tier": "premium"}, arm="*"),
)
_LOW_TRAFFIC_USE_CASES: Table = (("billing", 0.3), ("technical", 0.38), ("account", 0.19), ("other", 0.09),
                                 ("legal", 0.04))
_SHIFTED_TIERS: Table = (("free", 0.3), ("pro", 0.3), ("premium", 0.4))

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("aa", "A/A: both arms identical (rich text, base-rate PII and refusals); nothing should happen.",
             GroundTruth("none"), lambda s: _rich(s, regressions=list(SEGMENT_BASELINES))),
    Scenario("escalation-premium",
             "The motivating case: escalations 5 % -> 15 % for premium users only (overall moves ~1.5 pt).",
             GroundTruth("rollback", {"tier": "premium"}, "escalation_rate"),
             lambda s: _rich(s, regressions=[*SEGMENT_BASELINES,
                                             Regression("escalation_rate", 0.15, {"tier": "premium"})])),
    Scenario("task-success-billing", "Task success 85 % -> 72 % in use_case=billing.",
             GroundTruth("rollback", {"use_case": "billing"}, "task_success_rate"),
             lambda s: _rich(s, regressions=[Regression("task_success_rate", 0.72, {"use_case": "billing"})])),
    Scenario("latency-p95", "Canary latency x1.5 everywhere (p95 ratio 1.5 vs bound 1.25).",
             GroundTruth("pause", {}, "latency_p95_ms"),
             lambda s: _rich(s, regressions=[Regression("latency", 1.5)])),
    Scenario("cost-tokens-x2", "Canary uses twice the input and output tokens (cost x2).",
             GroundTruth("pause", {}, "cost_per_request"),
             lambda s: _rich(s, regressions=[Regression("tokens", 2.0)])),
    Scenario("leak-burst",
             "Burst of leaked AWS keys (5 %) and PII (20 %) in canary outputs between events 6,000 and 7,000.",
             GroundTruth("pause", {}, "safety_failures", 6000),
             lambda s: _rich(s, regressions=[Regression("leak", 0.05, start=6000, end=7000),
                                             Regression("pii", 0.20, start=6000, end=7000)]),
             extra_criteria=({"metric": "guard.pii.rate", "max_increase": 0.02, "action": "pause"},)),
    Scenario("shadow-disagreement", "Shadow stage: candidate disagrees with live 2 % -> 40 % in use_case=billing.",
             GroundTruth("pause", {"use_case": "billing"}, "shadow_disagreement_rate", 0),
             lambda s: _rich(s, shadow=True, regressions=[Regression("disagree", 0.4, {"use_case": "billing"})]),
             n=12_000, spec=SHADOW_SPEC),
    Scenario("broken-split", "Assignment bug: the canary gets 22 % instead of the promised 25 %.",
             GroundTruth("pause", {}, "srm", 0), lambda s: _rich(s, canary_weight=0.22)),
    Scenario("drift-ramp",
             "Healthy canary degrades gradually after passing its gates: errors 1 % -> 10 % over events "
             "6,000-18,000 (crosses the 2 pt bound near event 8,700).",
             GroundTruth("pause", {}, "error_rate", 6000),
             lambda s: _rich(s, regressions=[Regression("error_rate", 0.10, start=6000, ramp=12_000)])),
    Scenario("mix-shift",
             "Not a regression: premium share 15 % -> 40 % at event 8,000 in both arms; premium escalates "
             "more, is slower and succeeds less, so overall metrics move for both arms alike.",
             GroundTruth("none"),
             lambda s: _rich(s, regressions=list(SEGMENT_BASELINES),
                             mix_shifts=[MixShift(8000, "tier", _SHIFTED_TIERS)])),
    Scenario("low-traffic-segment",
             "Escalations 3 % -> 30 % in use_case=legal (4 % of traffic, ~300 canary responses in 30 k).",
             GroundTruth("rollback", {"use_case": "legal"}, "escalation_rate", 0),
             lambda s: _rich(s, use_cases=_LOW_TRAFFIC_USE_CASES,
                             regressions=[Regression("escalation_rate", 0.30, {"use_case": "legal"})]),
             n=30_000),
    Scenario("late-outcomes",
             "Escalations 3 % -> 7 % for every canary user, seen through outcomes that arrive late (exponential "
             "delay, mean 30 s = 6,000 events) and only for 50 % of requests; those due after the end never do.",
             GroundTruth("rollback", {}, "escalation_rate", 0),
             lambda s: _rich(s, outcome_share=0.5, late_outcomes=True,
                             regressions=[Regression("escalation_rate", 0.07)]),
             n=30_000),
)}

"""All drift detectors for one (segment, variant), with alert gating, in one picklable object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .drift_base import DriftState
from .drift_categorical import CategoricalMixShift, length_bucket
from .drift_episodes import DriftClassifier, EpisodeGate, GateEvent, Verdict
from .drift_multivariate import FEATURES, MultivariateAnomaly
from .drift_univariate import BinaryRateDrift, DistributionShift, LogScaleShift

BINARY_METRICS: tuple[str, ...] = ("error", "refused", "fallback", "guard_failed", "escalated")
LOG_METRICS: tuple[str, ...] = ("latency_ms", "cost_usd")
INPUT_METRICS: tuple[str, ...] = ("prompt_len", "script", "use_case")
OUTPUT_METRICS: tuple[str, ...] = (*BINARY_METRICS, *LOG_METRICS, "output_tokens", "anomaly_rate")


@dataclass
class BankConfig:
    """Constructor arguments for each detector in a :class:`DetectorBank`, plus gate timing.

    ``quiet`` / ``cooldown`` are in the clock the bank is driven with: seconds if ``update`` is
    given ``t``, otherwise each detector's own update count.
    """

    binary: dict[str, Any] = field(default_factory=dict)
    log_scale: dict[str, Any] = field(default_factory=dict)
    distribution: dict[str, Any] = field(default_factory=dict)
    anomaly: dict[str, Any] = field(default_factory=dict)
    categorical: dict[str, Any] = field(default_factory=dict)
    quiet: float = 500.0
    cooldown: float = 2000.0


class DetectorBank:
    """The detector set for one segment x variant.

    ``update`` takes the per-event numbers the ingest stage already has (any subset: an
    outcome event updates only ``escalated``) and returns the gated alert / recovery events.
    Text never enters: the caller passes ``script_of(input)`` and lengths.

    Detectors (``detectors[name]``): ``error``, ``refused``, ``fallback``, ``guard_failed``,
    ``escalated`` (:class:`BinaryRateDrift`); ``latency_ms``, ``cost_usd``
    (:class:`LogScaleShift`); ``output_tokens`` (:class:`DistributionShift`); ``anomaly_rate``
    (:class:`MultivariateAnomaly`); ``prompt_len``, ``script``, ``use_case``
    (:class:`CategoricalMixShift`).

    >>> import random
    >>> rng = random.Random(0)
    >>> bank = DetectorBank(seed=1)
    >>> for i in range(3000):
    ...     events = bank.update(latency_ms=rng.lognormvariate(6, 0.4) * (2 if i >= 2000 else 1),
    ...                          error=rng.random() < 0.01, output_tokens=rng.randint(50, 200),
    ...                          input_tokens=300, cost_usd=0.002, script="latin", use_case="billing")
    ...     for e in events:
    ...         print(e.kind, e.key, e.at > 2000)
    alert latency_ms True
    alert anomaly_rate True
    recovery anomaly_rate True

    The anomaly rate recovers while latency stays in drift: HST re-learns the new normal
    within a few of its windows, so it flags the change, not the level.
    """

    def __init__(self, config: BankConfig | None = None, seed: int = 0) -> None:
        c = config or BankConfig()
        self.config = c
        d: dict[str, Any] = {}
        for name in BINARY_METRICS:
            d[name] = BinaryRateDrift(**c.binary)
        for name in LOG_METRICS:
            d[name] = LogScaleShift(**c.log_scale)
        d["output_tokens"] = DistributionShift(**{"seed": seed, **c.distribution})
        d["anomaly_rate"] = MultivariateAnomaly(**{"seed": seed, **c.anomaly})
        for name in INPUT_METRICS:
            d[name] = CategoricalMixShift(**c.categorical)
        self.detectors = d
        self.gates = {k: EpisodeGate(k, c.quiet, c.cooldown) for k in d}

    def _step(self, name: str, value: Any, t: float | None, out: list[GateEvent]) -> None:
        det = self.detectors[name]
        det.update(value, t)
        ev = self.gates[name].observe(det.drift_detected, det.n if t is None else t, det.in_drift)
        if ev is not None:
            out.append(ev)

    def update(
        self,
        *,
        t: float | None = None,
        latency_ms: float | None = None,
        cost_usd: float | None = None,
        input_tokens: float | None = None,
        output_tokens: float | None = None,
        output_chars: float | None = None,
        prompt_chars: float | None = None,
        script: str | None = None,
        use_case: str | None = None,
        error: bool | None = None,
        refused: bool | None = None,
        fallback: bool | None = None,
        guard_failed: bool | None = None,
        escalated: bool | None = None,
    ) -> list[GateEvent]:
        """Feed one event's numbers; ``None`` fields skip their detectors. Returns alerts."""
        out: list[GateEvent] = []
        step = self._step
        for name, v in (
            ("error", error),
            ("refused", refused),
            ("fallback", fallback),
            ("guard_failed", guard_failed),
            ("escalated", escalated),
            ("latency_ms", latency_ms),
            ("cost_usd", cost_usd),
            ("output_tokens", output_tokens),
            ("script", script),
            ("use_case", use_case),
        ):
            if v is not None:
                step(name, v, t, out)
        if prompt_chars is not None:
            step("prompt_len", length_bucket(prompt_chars), t, out)
        if latency_ms is not None:
            mv = {
                "latency_ms": latency_ms,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost_usd": cost_usd,
                "output_chars": output_chars,
            }
            step("anomaly_rate", mv, t, out)
        return out

    def tick(self, now: float) -> list[GateEvent]:
        """Let gates emit recoveries on a timer when events are sparse (event-time clocks)."""
        out = []
        for name, g in self.gates.items():
            ev = g.tick(now, self.detectors[name].in_drift)
            if ev is not None:
                out.append(ev)
        return out

    def states(self) -> dict[str, DriftState]:
        """Frozen episode state of every detector."""
        return {k: v.state() for k, v in self.detectors.items()}

    def input_state(self) -> DriftState:
        """Merged input-drift state: in drift if any input detector is; earliest onset."""
        return _merge([self.detectors[k].state() for k in INPUT_METRICS])

    def in_drift(self) -> list[str]:
        """Names of detectors currently in a drift episode."""
        return [k for k, v in self.detectors.items() if v.in_drift]


def _merge(states: list[DriftState]) -> DriftState:
    active = [s for s in states if s.in_drift]
    if not active:
        return DriftState(False)
    first = min(active, key=lambda s: s.since_time if s.since_time is not None else float(s.since or 0))
    return DriftState(True, first.since, first.since_time, any(s.detected for s in active), first.direction)


def classify_banks(
    baseline: DetectorBank,
    candidate: DetectorBank,
    classifier: DriftClassifier | None = None,
    now: float | None = None,
    metrics: tuple[str, ...] = OUTPUT_METRICS,
) -> Mapping[str, Verdict]:
    """Classify every output metric of a segment; input drift from either variant counts."""
    clf = classifier or DriftClassifier()
    inp = _merge([baseline.input_state(), candidate.input_state()])
    return {m: clf(baseline.detectors[m], candidate.detectors[m], inp, key=m, now=now) for m in metrics}


__all__ = [
    "BINARY_METRICS",
    "FEATURES",
    "INPUT_METRICS",
    "LOG_METRICS",
    "OUTPUT_METRICS",
    "BankConfig",
    "DetectorBank",
    "classify_banks",
]

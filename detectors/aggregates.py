"""Mergeable aggregates: what ingest folds next to the data and the analysis merges per feature.

Every aggregate here is a commutative monoid (``merge`` is associative and commutative, ``VariantStats()``
is the identity), so the merged result does not depend on how partitions were assigned or in which order
partials arrive. That property is what lets rollguard pre-aggregate per partition instead of reshuffling
every event through Kafka; the hypothesis tests in ``tests/unit/detectors`` hold it to that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ddsketch.mapping import LogarithmicMapping

#: 1 % relative accuracy on quantiles, as DDSketch's default.
RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_ZERO = -(2**31)  # bucket key for values too small for the log mapping (0 ms latencies)
# ``_MAPPING.key(v)`` is ``int(ceil(log(v, 2) * multiplier) + offset)`` (ddsketch's LogarithmicMapping); ingest
# adds one latency per response, so ``QuantileSketch.add`` evaluates that expression itself instead of two
# Python method calls. A unit test holds the two to the same keys.
_KEY_MULTIPLIER: float = _MAPPING._multiplier
_KEY_OFFSET: float = _MAPPING._offset
_MIN_POSSIBLE: float = _MAPPING.min_possible


class QuantileSketch:
    """DDSketch over positive values (latency), with a sparse dict store.

    The ``ddsketch`` package supplies the log mapping (bucket key <-> value with 1 % relative error);
    its dense stores have no stable serialisation without protobuf, and we ship sketches as JSON in the
    partials, so the store is a plain ``{key: count}`` dict that merges by addition.

    >>> s = QuantileSketch()
    >>> for v in range(1, 101):
    ...     s.add(float(v))
    >>> round(s.quantile(0.95))
    95
    >>> t = QuantileSketch.from_dict(s.to_dict()); t.merge(s); t.count
    200
    """

    __slots__ = ("bins", "count")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0

    def add(self, value: float) -> None:
        key = int(math.ceil(math.log(value, 2) * _KEY_MULTIPLIER) + _KEY_OFFSET) if value > _MIN_POSSIBLE else _ZERO
        bins = self.bins
        bins[key] = bins.get(key, 0) + 1
        self.count += 1

    def merge(self, other: QuantileSketch) -> None:
        bins = self.bins
        for k, c in other.bins.items():
            bins[k] = bins.get(k, 0) + c
        self.count += other.count

    def quantile(self, q: float) -> float:
        """The q-quantile within 1 % relative error; NaN when empty."""
        if self.count == 0:
            return math.nan
        rank = q * (self.count - 1)
        seen = 0
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                return 0.0 if key == _ZERO else float(_MAPPING.value(key))
        return float(_MAPPING.value(max(self.bins)))

    def count_above(self, threshold: float) -> int:
        """How many values fell in buckets above ``threshold`` (1 % relative resolution)."""
        if threshold <= _MAPPING.min_possible:
            return self.count - self.bins.get(_ZERO, 0)
        tk = _MAPPING.key(threshold)
        return sum(c for k, c in self.bins.items() if k > tk)

    def to_dict(self) -> dict[str, int]:
        return {str(k): c for k, c in self.bins.items()}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> QuantileSketch:
        s = cls()
        s.bins = {int(k): int(c) for k, c in data.items()}
        s.count = sum(s.bins.values())
        return s


class Moments:
    """Count, sum and sum of squares: enough for means, variances and the delta method."""

    __slots__ = ("n", "sum", "sumsq")

    def __init__(self, n: int = 0, sum: float = 0.0, sumsq: float = 0.0) -> None:
        self.n, self.sum, self.sumsq = n, sum, sumsq

    def add(self, x: float) -> None:
        self.n += 1
        self.sum += x
        self.sumsq += x * x

    def merge(self, other: Moments) -> None:
        self.n += other.n
        self.sum += other.sum
        self.sumsq += other.sumsq

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else math.nan

    def to_list(self) -> list[float]:
        return [self.n, self.sum, self.sumsq]

    @classmethod
    def from_list(cls, data: Iterable[float]) -> Moments:
        n, s, ss = data
        return cls(int(n), float(s), float(ss))


_COUNTERS = (
    "requests", "errors", "fallbacks", "refusals", "safety_failures",
    "outcomes", "success_n", "successes", "escalation_n", "escalations", "feedback_n", "feedback_sum",
    "pairs", "agree_exact", "agree_normalized", "agree_similar", "pair_fail_candidate_only",
    "pair_fail_baseline_only",
)
_OUTCOME_COUNTERS = ("outcomes", "success_n", "successes", "escalation_n", "escalations", "feedback_n",
                     "feedback_sum")
_MOMENTS = ("cost", "input_tokens", "output_tokens", "output_chars", "latency_delta", "cost_delta")


def _compile(name: str, args: str, lines: list[str]) -> Any:
    """Straight-line code over the field list, generated once (as ``dataclasses`` does): the analysis merges
    hundreds of thousands of these per step with many segments, and loops of getattr/setattr cost ~5x more."""
    namespace: dict[str, Any] = {"Moments": Moments}
    exec(f"def {name}({args}):\n" + "\n".join(f"    {ln}" for ln in lines), namespace)
    return namespace[name]


_init_fields = _compile("_init_fields", "self", [f"self.{n} = 0" for n in _COUNTERS]
                        + [f"self.{n} = Moments()" for n in _MOMENTS])
_merge_fields = _compile("_merge_fields", "self, other", [f"self.{n} += other.{n}" for n in _COUNTERS] + [
    f"a, b = self.{n}, other.{n}\n    a.n += b.n; a.sum += b.sum; a.sumsq += b.sumsq" for n in _MOMENTS])


class VariantStats:
    """Everything rollguard counts for one (feature, segment, variant, window).

    ``guard_failures`` counts responses with at least one finding per guard name; ``safety_failures``
    counts responses with a critical finding. Outcome counters only include joined outcomes.

    >>> a, b = VariantStats(), VariantStats()
    >>> a.add_response(latency_ms=120.0, cost_usd=0.002, error=True, guards=("refusal",))
    >>> b.add_response(latency_ms=80.0, refused=True)
    >>> a.merge(b); (a.requests, a.errors, a.refusals, a.guard_failures)
    (2, 1, 1, {'refusal': 1})
    """

    __slots__ = (*_COUNTERS, *_MOMENTS, "guard_failures", "latency")

    def __init__(self) -> None:
        _init_fields(self)
        self.guard_failures: dict[str, int] = {}
        self.latency = QuantileSketch()

    # Declared for type checkers; the values are set in __init__ through setattr.
    requests: int
    errors: int
    fallbacks: int
    refusals: int
    safety_failures: int
    outcomes: int
    success_n: int
    successes: int
    escalation_n: int
    escalations: int
    feedback_n: int
    feedback_sum: float
    pairs: int
    agree_exact: int
    agree_normalized: int
    agree_similar: int
    pair_fail_candidate_only: int
    pair_fail_baseline_only: int
    latency_delta: Moments
    cost_delta: Moments
    cost: Moments
    input_tokens: Moments
    output_tokens: Moments
    output_chars: Moments

    def add_response(
        self,
        *,
        latency_ms: float | None = None,
        cost_usd: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        output_chars: int | None = None,
        error: bool = False,
        fallback: bool = False,
        refused: bool = False,
        critical: bool = False,
        guards: Iterable[str] = (),
    ) -> None:
        self.requests += 1
        if error:
            self.errors += 1
        if fallback:
            self.fallbacks += 1
        if refused:
            self.refusals += 1
        if critical:
            self.safety_failures += 1
        if guards:
            gf = self.guard_failures
            for g in guards:
                gf[g] = gf.get(g, 0) + 1
        if latency_ms is not None:
            self.latency.add(latency_ms)
        # Moments.add written out (the same operations in the same order): ingest calls this once per response,
        # and the four method calls were ~0.1 µs of its ~0.9
        if cost_usd is not None:
            m = self.cost
            m.n += 1
            m.sum += cost_usd
            m.sumsq += cost_usd * cost_usd
        if input_tokens is not None:
            m = self.input_tokens
            m.n += 1
            m.sum += input_tokens
            m.sumsq += input_tokens * input_tokens
        if output_tokens is not None:
            m = self.output_tokens
            m.n += 1
            m.sum += output_tokens
            m.sumsq += output_tokens * output_tokens
        if output_chars is not None:
            m = self.output_chars
            m.n += 1
            m.sum += output_chars
            m.sumsq += output_chars * output_chars

    def add_outcome(self, *, task_success: bool | None, escalated: bool | None,
                    feedback: float | None) -> None:
        self.outcomes += 1
        if task_success is not None:
            self.success_n += 1
            self.successes += int(task_success)
        if escalated is not None:
            self.escalation_n += 1
            self.escalations += int(escalated)
        if feedback is not None:
            self.feedback_n += 1
            self.feedback_sum += feedback

    def add_pair(self, *, exact: bool, normalized: bool, similar: bool, candidate_failed: bool,
                 baseline_failed: bool, latency_delta: float | None, cost_delta: float | None) -> None:
        """One shadow response paired with the live response to the same request (counted on the shadow arm)."""
        self.pairs += 1
        self.agree_exact += exact
        self.agree_normalized += normalized
        self.agree_similar += similar
        if candidate_failed and not baseline_failed:
            self.pair_fail_candidate_only += 1
        elif baseline_failed and not candidate_failed:
            self.pair_fail_baseline_only += 1
        if latency_delta is not None:
            self.latency_delta.add(latency_delta)
        if cost_delta is not None:
            self.cost_delta.add(cost_delta)

    def merge(self, other: VariantStats) -> None:
        _merge_fields(self, other)
        gf = self.guard_failures
        for g, c in other.guard_failures.items():
            gf[g] = gf.get(g, 0) + c
        self.latency.merge(other.latency)

    def split_outcomes(self) -> tuple[VariantStats, VariantStats]:
        """(everything but the joined outcomes, only the joined outcomes): outcomes can be held back until
        they have had time to arrive, while the responses they belong to count at once."""
        responses, outcomes = self.copy(), VariantStats()
        for name in _OUTCOME_COUNTERS:
            setattr(outcomes, name, getattr(self, name))
            setattr(responses, name, 0)
        return responses, outcomes

    def copy(self) -> VariantStats:
        out = VariantStats()
        out.merge(self)
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS if getattr(self, name)}
        for name in _MOMENTS:
            m = getattr(self, name)
            if m.n:
                d[name] = m.to_list()
        if self.guard_failures:
            d["guard_failures"] = dict(self.guard_failures)
        if self.latency.count:
            d["latency"] = self.latency.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantStats:
        s = cls()
        for name in _COUNTERS:
            if name in data:
                setattr(s, name, data[name])
        for name in _MOMENTS:
            if name in data:
                setattr(s, name, Moments.from_list(data[name]))
        s.guard_failures = {str(k): int(v) for k, v in data.get("guard_failures", {}).items()}
        if "latency" in data:
            s.latency = QuantileSketch.from_dict(data["latency"])
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VariantStats) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"VariantStats({self.to_dict()!r})"

    def rate(self, metric: str) -> tuple[int, int]:
        """(successes, trials) for a binary metric name used in rollout criteria."""
        if metric == "error_rate":
            return self.errors, self.requests
        if metric == "refusal_rate":
            return self.refusals, self.requests
        if metric == "fallback_rate":
            return self.fallbacks, self.requests
        if metric == "safety_failure_rate":
            return self.safety_failures, self.requests
        if metric == "escalation_rate":
            return self.escalations, self.escalation_n
        if metric == "task_success_rate":
            return self.successes, self.success_n
        if metric.startswith("guard.") and metric.endswith(".rate"):
            return self.guard_failures.get(metric[6:-5], 0), self.requests
        raise KeyError(metric)

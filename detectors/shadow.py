"""Shadow-vs-live statistics: the same request answered by two variants.

Shadow traffic gives *paired* observations (one request, two outputs), which removes the between-request
variance that dominates A/B comparisons. This module has three small pieces:

* text agreement between the shadow and the live output (exact, normalised, token-set Jaccard), as pure
  functions cheap enough to run on every joined pair;
* McNemar's test for paired guard failures: only discordant pairs carry information. The fixed-horizon
  exact p-value comes from :func:`scipy.stats.binomtest`; the anytime-valid version is a beta-binomial
  mixture martingale over the discordant pairs, so it can be checked after every flush;
* :class:`PairedDelta`, a mergeable ``(n, sum, sum of squares)`` accumulator of per-request differences
  (latency, cost) with a mean-difference confidence sequence.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .sequential import Verdict, beta_binomial_log_e, mean_difference

_PUNCT = re.compile(r"[^\w\s]+|_+")
_SPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------------------------------
# Text agreement
# --------------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Case-, width-, whitespace- and punctuation-folded text, for comparing outputs that differ in form.

    >>> normalize_text("  Hello,   WORLD!\\n")
    'hello world'
    """
    t = unicodedata.normalize("NFKC", text).casefold()
    t = _PUNCT.sub(" ", t)
    return _SPACE.sub(" ", t).strip()


def exact_match(a: str, b: str) -> bool:
    """Byte-for-byte agreement (after nothing).

    >>> exact_match("Yes.", "Yes.")
    True
    """
    return a == b


def normalized_match(a: str, b: str) -> bool:
    """Agreement after :func:`normalize_text`.

    >>> normalized_match("Your refund is on its way!", "your refund is on its way")
    True
    """
    return a == b or normalize_text(a) == normalize_text(b)


def token_jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the normalised token sets (1.0 for two empty texts).

    >>> token_jaccard("the refund was sent", "refund sent")
    0.5
    """
    sa = set(normalize_text(a).split())
    sb = set(normalize_text(b).split())
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True, slots=True)
class Agreement:
    """All agreement levels for one shadow/live pair; ``similar`` = Jaccard >= threshold."""

    exact: bool
    normalized: bool
    jaccard: float
    similar: bool


def agreement(shadow: str, live: str, *, threshold: float = 0.8) -> Agreement:
    """Compare a shadow output with the live output of the same request (normalises each text once).

    >>> agreement("Refund sent.", "refund sent")
    Agreement(exact=False, normalized=True, jaccard=1.0, similar=True)
    """
    if shadow == live:
        return Agreement(True, True, 1.0, True)
    na, nb = normalize_text(shadow), normalize_text(live)
    sa, sb = set(na.split()), set(nb.split())
    union = sa | sb
    jac = 1.0 if not union else len(sa & sb) / len(union)
    return Agreement(False, na == nb, jac, jac >= threshold)


# --------------------------------------------------------------------------------------------------
# Paired binary outcomes (guard failures): McNemar
# --------------------------------------------------------------------------------------------------

#: Beta(c/2, c/2) prior truncated to pi > 1/2 for the sequential McNemar test; c = 2 is uniform on (1/2, 1].
MCNEMAR_CONCENTRATION = 2.0


@dataclass(frozen=True, slots=True)
class McNemarResult:
    """Paired failure comparison.

    ``candidate_only``: pairs where only the candidate (shadow) failed; ``baseline_only``: only the live one.
    ``worse`` is the anytime-valid decision (``e_value >= 1/alpha``) for "candidate fails more often";
    ``p_value = min(1, 1/e_value)``; ``exact_p_value`` is the fixed-horizon one-sided exact McNemar test
    (reports only). ``rate_difference`` is ``(candidate_only - baseline_only) / n_pairs`` when known.
    """

    worse: bool
    e_value: float
    p_value: float
    exact_p_value: float
    candidate_only: int
    baseline_only: int
    rate_difference: float


def mcnemar(
    candidate_only: int,
    baseline_only: int,
    n_pairs: int | None = None,
    *,
    alpha: float = 0.05,
    concentration: float = MCNEMAR_CONCENTRATION,
) -> McNemarResult:
    """Sequential and exact McNemar test of "the candidate fails more often than the baseline".

    Among discordant pairs the count of candidate-only failures is Bin(d, pi) with pi <= 1/2 exactly when
    the candidate's failure rate is <= the baseline's; the e-value is the beta-binomial mixture over
    pi in (1/2, 1], an exact test martingale on the discordant-pair sequence (valid under peeking).

    >>> r = mcnemar(30, 5, 2000)
    >>> r.worse, r.exact_p_value < 1e-4, r.rate_difference
    (True, True, 0.0125)
    >>> mcnemar(10, 10).worse
    False
    """
    if candidate_only < 0 or baseline_only < 0:
        raise ValueError("counts must be >= 0")
    d = candidate_only + baseline_only
    if d == 0:
        log_e, exact_p = 0.0, 1.0
    else:
        log_e = float(
            beta_binomial_log_e(np.asarray([float(candidate_only)]), d, 0.5, concentration, upper=True)[0]
        )
        exact_p = float(stats.binomtest(candidate_only, d, 0.5, alternative="greater").pvalue)
    e = math.exp(min(log_e, 700.0))
    diff = (candidate_only - baseline_only) / n_pairs if n_pairs else math.nan
    return McNemarResult(
        worse=e >= 1.0 / alpha,
        e_value=e,
        p_value=min(1.0, 1.0 / e),
        exact_p_value=exact_p,
        candidate_only=candidate_only,
        baseline_only=baseline_only,
        rate_difference=diff,
    )


def paired_rate_increase(
    candidate_only: int,
    baseline_only: int,
    n_pairs: int,
    *,
    max_increase: float,
    alpha: float = 0.05,
    min_n: int = 100,
    metric: str = "paired_failure_rate",
) -> Verdict:
    """Paired failure-rate difference against a tolerance ``max_increase`` (McNemar with a margin).

    The per-pair difference is +1 (only candidate failed), -1 (only baseline) or 0, so ``sum = b - c`` and
    ``sum of squares = b + c``; the mean-difference confidence sequence then applies.

    >>> paired_rate_increase(60, 10, 2000, max_increase=0.005).outcome
    'worse'
    """
    if n_pairs < candidate_only + baseline_only:
        raise ValueError("n_pairs must be >= the number of discordant pairs")
    return mean_difference(
        float(candidate_only - baseline_only),
        float(candidate_only + baseline_only),
        n_pairs,
        max_increase=max_increase,
        alpha=alpha,
        min_n=min_n,
        metric=metric,
    )


# --------------------------------------------------------------------------------------------------
# Paired continuous differences (latency, cost)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairedDelta:
    """Mergeable sufficient statistics of per-request differences ``candidate - baseline``.

    Associative and commutative (``a + b == b + a``), so partitions can fold independently.

    >>> acc = PairedDelta().add(120.0, 100.0).add(90.0, 100.0)
    >>> acc, acc.mean
    (PairedDelta(n=2, total=10.0, total_sq=500.0), 5.0)
    >>> (acc + PairedDelta.from_pairs([130.0], [100.0])).n
    3
    """

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, candidate: float, baseline: float) -> PairedDelta:
        """Return the accumulator with one more pair."""
        d = candidate - baseline
        return PairedDelta(self.n + 1, self.total + d, self.total_sq + d * d)

    def merge(self, other: PairedDelta) -> PairedDelta:
        """Combine two partial accumulators."""
        return PairedDelta(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    __add__ = merge

    @classmethod
    def from_pairs(cls, candidate: ArrayLike, baseline: ArrayLike) -> PairedDelta:
        """Accumulate arrays of paired values at once."""
        d = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
        return cls(int(d.size), float(d.sum()), float(np.dot(d, d)))

    @classmethod
    def sum_all(cls, parts: Iterable[PairedDelta]) -> PairedDelta:
        """Merge many partial accumulators."""
        out = cls()
        for p in parts:
            out = out.merge(p)
        return out

    @property
    def mean(self) -> float:
        """Mean difference (NaN when empty)."""
        return self.total / self.n if self.n else math.nan

    def verdict(
        self, *, max_increase: float, alpha: float = 0.05, min_n: int = 30, metric: str = "paired_difference"
    ) -> Verdict:
        """Anytime-valid test of ``mean difference > max_increase`` (see :func:`mean_difference`)."""
        return mean_difference(
            self.total, self.total_sq, self.n, max_increase=max_increase, alpha=alpha, min_n=min_n,
            metric=metric,
        )

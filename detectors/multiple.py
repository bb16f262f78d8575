"""Family-wise error control across segments x criteria for anytime-valid tests.

The analysis tests many (segment, criterion) pairs after every flush. Each test here is anytime-valid, so
a union bound over the family holds uniformly over time too:

* **Bonferroni** (call every test with ``alpha / k``) keeps P(any false ``worse`` at any time) <= alpha.
  It is the simplest choice and keeps each verdict's confidence sequence consistent with its decision.
* **Holm** on the anytime-valid p-values is also valid uniformly over time (the first true null Holm
  rejects needs ``p <= alpha / |true nulls|``; a union bound over those nulls' time-uniform events gives
  alpha) and is never less powerful than Bonferroni.
* Declaring a rollout ``not_worse`` on *all* criteria and segments (promotion) is an intersection-union
  test: each at level alpha gives level alpha overall, no correction needed (Berger 1982).
"""

from __future__ import annotations

from collections.abc import Sequence

from .sequential import Verdict


def bonferroni_alpha(alpha: float, k: int) -> float:
    """Per-test level for a family of ``k`` anytime-valid tests (pass it as each test's ``alpha``).

    >>> bonferroni_alpha(0.05, 10)
    0.005
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    return alpha / k


def bonferroni(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Reject where ``p <= alpha / k``.

    >>> bonferroni([0.001, 0.02, 0.5], 0.05)
    [True, False, False]
    """
    k = len(p_values)
    return [p <= alpha / k for p in p_values] if k else []


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure; valid with anytime-valid p-values uniformly over time.

    >>> holm([0.001, 0.02, 0.5], 0.05)
    [True, True, False]
    """
    k = len(p_values)
    order = sorted(range(k), key=lambda i: p_values[i])
    reject = [False] * k
    for rank, i in enumerate(order):
        if p_values[i] <= alpha / (k - rank):
            reject[i] = True
        else:
            break
    return reject


def family_worse(verdicts: Sequence[Verdict], alpha: float, *, method: str = "holm") -> list[bool]:
    """Which verdicts are ``worse`` after family-wise correction at level ``alpha``.

    Uses each verdict's anytime-valid ``p_value`` (insufficient verdicts have p = 1). ``method`` is
    ``"holm"`` or ``"bonferroni"``.
    """
    ps = [v.p_value if v.outcome != "insufficient" else 1.0 for v in verdicts]
    if method == "holm":
        return holm(ps, alpha)
    if method == "bonferroni":
        return bonferroni(ps, alpha)
    raise ValueError(f"unknown method {method!r}")


def all_not_worse(verdicts: Sequence[Verdict]) -> bool:
    """Promotion gate: every criterion in every segment established ``not_worse`` (intersection-union).

    >>> all_not_worse([])
    False
    """
    return bool(verdicts) and all(v.outcome == "not_worse" for v in verdicts)

"""SRM, shadow-pair statistics and family-wise helpers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollguard.detectors.multiple import all_not_worse, bonferroni, bonferroni_alpha, family_worse, holm
from rollguard.detectors.sequential import rate_increase
from rollguard.detectors.shadow import (
    PairedDelta,
    agreement,
    exact_match,
    mcnemar,
    normalize_text,
    normalized_match,
    paired_rate_increase,
    token_jaccard,
)
from rollguard.detectors.srm import srm, srm_log_e

# --------------------------------------------------------------------------------------------------
# SRM
# --------------------------------------------------------------------------------------------------


def test_srm_known_cases() -> None:
    ok = srm([50_000, 50_100], [0.5, 0.5])
    assert not ok.mismatch and ok.p_value > 0.001 and ok.n == 100_100
    bad = srm([9_000, 1_300], [0.9, 0.1])
    assert bad.mismatch and bad.p_value < 1e-3 and bad.chi2_p_value < 1e-6
    assert bad.observed[1] == pytest.approx(1300 / 10300)
    assert bad.expected == pytest.approx((0.9, 0.1))
    empty = srm([0, 0], [1, 1])
    assert not empty.mismatch and empty.e_value == pytest.approx(1.0)


def test_srm_weights_any_scale_and_three_arms() -> None:
    a = srm([900, 100], [0.9, 0.1])
    b = srm([900, 100], [9, 1])
    assert a.e_value == pytest.approx(b.e_value)
    assert srm([3000, 3000, 2400], [1, 1, 1]).mismatch


def test_srm_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        srm([1, 2], [1.0])
    with pytest.raises(ValueError):
        srm([1, 2], [0.0, 1.0])
    with pytest.raises(ValueError):
        srm([-1, 2], [0.5, 0.5])


def test_srm_evidence_grows_with_imbalance() -> None:
    es = [srm([5000 + d, 5000 - d], [0.5, 0.5]).e_value for d in range(0, 500, 50)]
    assert all(a <= b for a, b in itertools.pairwise(es))


def test_srm_aa_peeking() -> None:
    rng = np.random.default_rng(1)
    runs, windows = 400, 60
    counts = np.cumsum(rng.multinomial(400, [0.95, 0.05], size=(runs, windows)), axis=1)
    alarms = (srm_log_e(counts, [0.95, 0.05]) >= math.log(20)).any(axis=1).mean()
    assert alarms <= 2 * 0.05


# --------------------------------------------------------------------------------------------------
# text agreement
# --------------------------------------------------------------------------------------------------


def test_text_agreement_levels() -> None:
    assert exact_match("a", "a") and not exact_match("a", "A")
    assert normalize_text("Ｈｅｌｌｏ,\tWorld!!  ") == "hello world"
    assert normalized_match("Refund: sent.", "refund sent")
    assert not normalized_match("refund sent", "refund denied")
    assert token_jaccard("", "") == 1.0 and token_jaccard("a", "") == 0.0
    assert token_jaccard("a b c d", "a b c e") == pytest.approx(3 / 5)
    ag = agreement("The refund was sent today.", "the refund was sent today", threshold=0.9)
    assert ag.normalized and ag.similar and not ag.exact
    far = agreement("yes", "no")
    assert not far.similar and far.jaccard == 0.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_jaccard_properties(a: str, b: str) -> None:
    j = token_jaccard(a, b)
    assert 0.0 <= j <= 1.0
    assert j == token_jaccard(b, a)
    assert token_jaccard(a, a) == 1.0
    ag = agreement(a, b)
    assert ag.jaccard == pytest.approx(j)
    assert ag.normalized == normalized_match(a, b)
    if ag.exact:
        assert ag.normalized and ag.similar


# --------------------------------------------------------------------------------------------------
# McNemar and paired deltas
# --------------------------------------------------------------------------------------------------


def test_mcnemar_cases() -> None:
    r = mcnemar(40, 8, 5000)
    assert r.worse and r.exact_p_value < 1e-5 and r.rate_difference == pytest.approx(32 / 5000)
    assert not mcnemar(8, 40).worse
    z = mcnemar(0, 0)
    assert not z.worse and z.exact_p_value == 1.0 and math.isnan(z.rate_difference)
    # anytime-valid is more conservative than the one-look exact test
    for b, c in ((20, 8), (30, 14), (12, 3)):
        m = mcnemar(b, c)
        assert m.p_value >= m.exact_p_value


def test_mcnemar_aa_peeking() -> None:
    rng = np.random.default_rng(2)
    runs, steps = 400, 400
    # discordant pairs arrive one at a time, each equally likely to be either kind
    b = np.cumsum(rng.random((runs, steps)) < 0.5, axis=1)
    alarms = 0
    for i in range(runs):
        for d in range(10, steps, 10):
            if mcnemar(int(b[i, d - 1]), d - int(b[i, d - 1])).worse:
                alarms += 1
                break
    assert alarms / runs <= 2 * 0.05


def test_paired_rate_increase() -> None:
    assert paired_rate_increase(80, 10, 3000, max_increase=0.0).outcome == "worse"
    assert paired_rate_increase(10, 10, 3000, max_increase=0.02).outcome == "not_worse"
    with pytest.raises(ValueError):
        paired_rate_increase(10, 10, 5, max_increase=0.0)


floats = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(floats, floats), max_size=40), st.integers(0, 40))
def test_paired_delta_mergeable(pairs: list[tuple[float, float]], cut: int) -> None:
    whole = PairedDelta()
    for c, b in pairs:
        whole = whole.add(c, b)
    left = PairedDelta.from_pairs([c for c, _ in pairs[:cut]], [b for _, b in pairs[:cut]])
    right = PairedDelta.from_pairs([c for c, _ in pairs[cut:]], [b for _, b in pairs[cut:]])
    for merged in (left + right, right + left, PairedDelta.sum_all([right, PairedDelta(), left])):
        assert merged.n == whole.n
        assert merged.total == pytest.approx(whole.total, abs=1e-6)
        assert merged.total_sq == pytest.approx(whole.total_sq, rel=1e-9, abs=1e-6)


def test_paired_delta_verdict() -> None:
    rng = np.random.default_rng(3)
    live = rng.lognormal(6, 0.5, 3000)
    shadow = live * 1.1 + rng.normal(0, 20, 3000)
    acc = PairedDelta.from_pairs(shadow, live)
    v = acc.verdict(max_increase=0.0, metric="latency_delta_ms")
    assert v.outcome == "worse" and v.lower <= acc.mean <= v.upper
    assert acc.verdict(max_increase=200.0).outcome == "not_worse"


# --------------------------------------------------------------------------------------------------
# multiple comparisons
# --------------------------------------------------------------------------------------------------


def test_bonferroni_and_holm() -> None:
    ps = [0.001, 0.012, 0.02, 0.3]
    assert bonferroni(ps, 0.05) == [True, True, False, False]
    assert holm(ps, 0.05) == [True, True, True, False]  # 0.02 <= 0.05 / 2
    assert holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]
    assert bonferroni([], 0.05) == [] and holm([], 0.05) == []
    assert bonferroni_alpha(0.05, 5) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        bonferroni_alpha(0.05, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), max_size=30), st.floats(0.001, 0.2))
def test_holm_dominates_bonferroni(ps: list[float], alpha: float) -> None:
    b, h = bonferroni(ps, alpha), holm(ps, alpha)
    assert all(h_i or not b_i for b_i, h_i in zip(b, h, strict=True))


def test_family_helpers_on_verdicts() -> None:
    vs = [
        rate_increase(900, 10000, 300, 10000, max_increase=0.0),
        rate_increase(300, 10000, 300, 10000, max_increase=0.0),
        rate_increase(1, 10, 1, 10, max_increase=0.0),
    ]
    assert family_worse(vs, 0.05) == [True, False, False]
    assert family_worse(vs, 0.05, method="bonferroni") == [True, False, False]
    with pytest.raises(ValueError):
        family_worse(vs, 0.05, method="bh")
    ok = rate_increase(300, 10000, 300, 10000, max_increase=0.02)
    assert all_not_worse([ok, ok]) and not all_not_worse([ok, vs[1]]) and not all_not_worse([])


@pytest.mark.parametrize("module", ["sequential", "srm", "shadow", "multiple"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"rollguard.detectors.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

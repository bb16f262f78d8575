"""Input drift: categorical mix (script, use case, prompt-length bucket) against a reference."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping

from scipy import stats

from .drift_base import EpisodeMixin, EpisodeTracker

OTHER = "__other__"

# (first code point, last code point, script) for a cheap majority-script guess.
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "latin"),
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0E00, 0x0E7F, "thai"),
    (0x1E00, 0x1EFF, "latin"),
    (0x3040, 0x30FF, "kana"),
    (0x3400, 0x4DBF, "cjk"),
    (0x4E00, 0x9FFF, "cjk"),
    (0xAC00, 0xD7AF, "hangul"),
    (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"),
)


# The ranges are sorted and disjoint, so a binary search finds the one range a code point can fall in.
_SCRIPT_STARTS = tuple(lo for lo, _, _ in _SCRIPT_RANGES)
_SCRIPT_ENDS = tuple(hi for _, hi, _ in _SCRIPT_RANGES)
_SCRIPT_NAMES = tuple(name for _, _, name in _SCRIPT_RANGES)


def script_of(text: str, prefix: int = 64) -> str:
    """Majority Unicode script among the letters of ``text[:prefix]``.

    A language identifier is overkill for mix drift: a change in the share of, say, Cyrillic
    or CJK prompts is what shifts model behaviour, and this costs a few microseconds.
    Japanese text mixing kana and kanji reports ``"kana"`` if any kana is present.

    >>> script_of("Bonjour, où est la gare ?"), script_of("Привет, мир"), script_of("你好，世界")
    ('latin', 'cyrillic', 'cjk')
    >>> script_of("こんにちは世界"), script_of("1234 !!"), script_of("مرحبا")
    ('kana', 'none', 'arabic')
    """
    head = text[:prefix]
    if head.isascii():
        # ingest calls this on sampled prompts, mostly ASCII: the only ASCII letters are A-Z and a-z (all
        # "latin"), and an ASCII string has one exactly when upper- and lower-casing it differ
        return "latin" if head.upper() != head.lower() else "none"
    counts: dict[str, int] = {}
    # each distinct character once (Counter counts in C, in order of first occurrence, so scripts enter
    # ``counts`` in the same order as a walk over the characters and max() breaks ties alike)
    for ch, k in Counter(head).items():
        if not ch.isalpha():
            continue
        cp = ord(ch)
        i = bisect_right(_SCRIPT_STARTS, cp) - 1
        name = _SCRIPT_NAMES[i] if i >= 0 and cp <= _SCRIPT_ENDS[i] else "other"
        counts[name] = counts.get(name, 0) + k
    if not counts:
        return "none"
    if "kana" in counts and "cjk" in counts:
        return "kana"
    return max(counts.items(), key=lambda kv: kv[1])[0]


def length_bucket(n: float) -> str:
    """Log2 bucket of a length, as a category: 0, 1, 2-3, 4-7, ... capped at 2^16.

    >>> [length_bucket(v) for v in (0, 1, 3, 900, 10**9)]
    ['b0', 'b1', 'b2', 'b10', 'b17']
    """
    n = int(n)
    return "b0" if n <= 0 else f"b{min(n.bit_length(), 17)}"


class CategoricalMixShift(EpisodeMixin):
    """Detects a change in a categorical mix (use case, script, length bucket).

    Every ``window`` values (tumbling, not sliding) the window's counts are compared with the
    reference counts by a G-test of homogeneity (2 x k contingency table, so the reference's
    own sampling noise is accounted for). Drift needs both ``p <= alpha`` and an effect size
    (Jensen-Shannon divergence, bits) ``>= min_js``: big windows make trivial shifts
    significant, and the effect floor keeps those quiet. Tumbling windows make the tests
    independent, so false alarms per value are about ``alpha / window``.

    The reference is the first ``warmup`` values or counts passed in (e.g. the baseline's);
    it keeps the ``max_categories - 1`` most frequent categories, the rest (and any category
    first seen later) fold into ``"__other__"``. The episode ends at the first window that is
    no longer significant at ``alpha_recover`` or whose divergence falls under ``min_js / 2``.

    >>> import random
    >>> rng = random.Random(2)
    >>> det = CategoricalMixShift()
    >>> for i in range(8000):
    ...     mix = [0.6, 0.3, 0.1] if i < 5000 else [0.4, 0.3, 0.3]
    ...     _ = det.update(rng.choices(["billing", "tech", "other"], mix)[0])
    >>> det.in_drift, det.since
    (True, 5500)
    """

    def __init__(
        self,
        window: int = 500,
        warmup: int = 2000,
        alpha: float = 1e-6,
        min_js: float = 0.01,
        alpha_recover: float = 1e-2,
        max_categories: int = 16,
        reference: Mapping[str, float] | None = None,
    ) -> None:
        self.window = window
        self.warmup = warmup
        self.alpha = alpha
        self.min_js = min_js
        self.alpha_recover = alpha_recover
        self.max_categories = max_categories
        self._ep = EpisodeTracker("both")
        self._ref: dict[str, float] | None = None
        self._acc: dict[str, int] = {}
        self._acc_n = 0
        self.p_value = 1.0
        self.js = 0.0
        if reference is not None:
            self.set_reference(reference)

    def set_reference(self, counts: Mapping[str, float]) -> None:
        """Use these counts as the reference (e.g. the baseline's recent counts)."""
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        keep = dict(top[: self.max_categories - 1])
        other = sum(v for _, v in top[self.max_categories - 1 :]) + keep.pop(OTHER, 0.0)
        keep[OTHER] = other
        self._ref = {k: float(v) for k, v in keep.items()}
        self._acc, self._acc_n = {}, 0

    @property
    def reference(self) -> dict[str, float] | None:
        """Reference counts by category, once known."""
        return self._ref

    def update(self, category: str, t: float | None = None) -> CategoricalMixShift:
        """Add one categorical observation."""
        ep = self._ep
        ep.tick(t)
        ref = self._ref
        if ref is None:
            acc = self._acc
            if category in acc or len(acc) < 256:
                acc[category] = acc.get(category, 0) + 1
            else:
                acc[OTHER] = acc.get(OTHER, 0) + 1
            self._acc_n += 1
            if self._acc_n >= self.warmup:
                self.set_reference(acc)
            return self
        key = category if category in ref else OTHER
        self._acc[key] = self._acc.get(key, 0) + 1
        self._acc_n += 1
        if self._acc_n >= self.window:
            self._test(t)
            self._acc, self._acc_n = {}, 0
        return self

    def _test(self, t: float | None) -> None:
        assert self._ref is not None
        ref, cur = self._ref, self._acc
        n_ref, n_cur = sum(ref.values()), float(self._acc_n)
        total = n_ref + n_cur
        g, k = 0.0, 0
        js = 0.0
        for cat in ref.keys() | cur.keys():
            a, b = ref.get(cat, 0.0), float(cur.get(cat, 0))
            col = a + b
            if col <= 0:
                continue
            k += 1
            for o, rown in ((a, n_ref), (b, n_cur)):
                if o > 0:
                    g += o * math.log(o * total / (col * rown))
            p, q = a / n_ref, b / n_cur
            m = 0.5 * (p + q)
            if p > 0:
                js += 0.5 * p * math.log2(p / m)
            if q > 0:
                js += 0.5 * q * math.log2(q / m)
        g *= 2.0
        self.p_value = float(stats.chi2.sf(g, k - 1)) if k > 1 else 1.0
        self.js = js
        ep = self._ep
        if not ep.in_drift:
            if self.p_value <= self.alpha and js >= self.min_js:
                ep.change(0.0, js, t)
        elif self.p_value > self.alpha_recover or js < 0.5 * self.min_js:
            ep.close()

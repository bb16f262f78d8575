"""The speed shortcuts give exactly the answers of the slow forms they replace."""

from __future__ import annotations

import random
import re

from rollguard.guards import patterns as p
from rollguard.guards import validators as v


def _luhn_loop(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def _ipv4_split(candidate: str) -> bool:
    parts = candidate.split(".")
    return len(parts) == 4 and all(q.isdigit() and int(q) <= 255 and (q == "0" or q[0] != "0") for q in parts)


def test_luhn_ean_ipv4_fast_paths_match_the_loops() -> None:
    rng = random.Random(11)
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19)))
        assert v.luhn_ok(digits) == _luhn_loop(digits), digits
        if len(digits) >= 13:
            want = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(digits[:12]))
            assert v.ean13_ok(digits) == ((10 - want % 10) % 10 == int(digits[12])), digits
        octets = [str(rng.choice([rng.randint(0, 300), rng.randint(0, 9)])) for _ in range(rng.choice([3, 4, 5]))]
        if rng.random() < 0.2:
            octets[0] = "0" + octets[0]
        ip = ".".join(octets)
        assert v.ipv4_ok(ip) == _ipv4_split(ip), ip


def test_card_ok_separators() -> None:
    assert v.card_ok("4111 1111 1111 1111") and v.card_ok("4111-1111-1111-1111")
    assert not v.card_ok("4111-1111 1111-1111") and not v.card_ok("41 111111 11111111")


def test_version_near_shortcut_matches_regex() -> None:
    words = ["version", "VERSION", "Release", "build", "firmware", "v", "V", "ver", "ſ", "verſion", "x", " ", "\n",
             "v2 ", "relea", "é", "日", "ver.", "İ", "K"]  # fmt: skip
    rng = random.Random(5)
    for _ in range(20_000):
        text = "".join(rng.choice(words) for _ in range(rng.randint(0, 8))) + " 1.2.3.4"
        start = len(text) - 7
        want = p._VERSION_NEAR.search(text, max(0, start - 24), start) is not None
        assert p._version_near(text, start) == want, text


def test_email_locate_covers_every_match_start() -> None:
    spec = p._PII["email"][0]
    assert spec.locate is not None
    rx = re.compile(spec.regex, re.ASCII)
    parts = ["a", "Z", "9", ".", "_", "%", "+", "-", "@", "x.com", "é", " ", "example.org", "a" * 30, "b" * 64, "日"]
    rng = random.Random(2)
    for _ in range(20_000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 20)))
        lo = rng.randint(0, len(text))
        hi = rng.randint(lo, len(text) + 1)
        got = spec.locate(text, lo, hi)
        assert got == sorted(got)
        assert {i for i in range(lo, min(hi, len(text))) if rx.match(text, i)} <= set(got), (text, lo, hi)


def _hs_output_scanner():  # type: ignore[no-untyped-def]
    import pytest

    from rollguard.guards import HAVE_HYPERSCAN, build_guard_set

    if not HAVE_HYPERSCAN:
        pytest.skip("needs hyperscan")
    gs = build_guard_set(engine="hyperscan")
    return next(s for f, s, _ in gs._scanners if f == "output")


def test_common_near_misses_open_no_region() -> None:
    """Rejected inside hyperscan (TLD, trunk separator, vetoes): no region, no Python walk."""
    sc = _hs_output_scanner()
    for text in (
        "Use icon@2x.png for retina screens.",
        "The product barcode is 4006381333931 and the manual is fine.",
        "The product barcode is 0536128392906 and the manual is fine.",
        "Update the app from version 9.12.5 to 9.12.5.6; the fix landed.",
        "See the build 10.0.0.1 notes.",
    ):
        assert sc.candidates(text) == [], text


def test_vetoes_never_hide_an_accepted_match() -> None:
    """A context word outside the validator's window (or behind \\b, which is Unicode in re)
    must not veto: both engines still report the card / IPv4."""
    from rollguard.guards import GuardItem, build_guard_set

    sc = _hs_output_scanner()
    hs_set = build_guard_set(engine="hyperscan")
    re_set = build_guard_set(engine="re")
    card, ip = "4111 1111 1111 1111", "192.168.1.20"
    cases = [
        ("barcode" + " " * 25 + card, set()),  # word inside the 32-character window: rejected
        ("barcode" + " " * 26 + card, {"pii.card"}),  # word starts 33 characters before: a card
        ("tracking" + "x" * 30 + " " + card, {"pii.card"}),
        ("version" + " " * 17 + ip, set()),  # word inside the 24-character window: rejected
        ("version" + " " * 18 + ip, {"pii.ipv4"}),
        ("éver " + ip, {"pii.ipv4"}),  # "\bver\b" is Unicode-aware in re: é is a word character
        ("barcode\n" + card, set()),
        ("my Barcode: " + card + " and the router at " + ip, {"pii.ipv4"}),
        ("my Barcode: " + card + " and version " + ip + ", card " + card, {"pii.card"}),
    ]
    for text, want in cases:
        got = hs_set.check(GuardItem(output=text))
        assert got == re_set.check(GuardItem(output=text)), text
        assert {f.code for f in got} & {"pii.card", "pii.ipv4"} == want, text
    assert sc.candidates("barcode" + " " * 26 + card)  # the vetoes' gaps stop at the window
    assert sc.candidates("version" + " " * 18 + ip)

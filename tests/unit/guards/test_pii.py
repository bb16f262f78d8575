from __future__ import annotations

import pytest
from guardtest_helpers import found, spans_text

from rollguard.guards import GuardSet

POSITIVE = [
    ("pii.email", "Contact jane.doe+billing@example.co.uk today.", "jane.doe+billing@example.co.uk"),
    ("pii.phone", "Call +44 20 7946 0958 after 9.", "+44 20 7946 0958"),
    ("pii.phone", "Our US line is (415) 555-2671.", "(415) 555-2671"),
    ("pii.phone", "Berlin office: +49 30 901820", "+49 30 901820"),
    ("pii.phone", "or 415.555.2671 if urgent", "415.555.2671"),
    ("pii.phone", "Tel. 030 901820 (Mo-Fr)", "030 901820"),
    ("pii.phone", "+33 (0)1 41 63 60 83 is Paris", "+33 (0)1 41 63 60 83"),
    ("pii.phone", "call me on 3420837783 tonight", "3420837783"),
    ("pii.card", "Card 4111 1111 1111 1111 expires 12/27.", "4111 1111 1111 1111"),
    ("pii.card", "amex 3782-822463-10005 on file", "3782-822463-10005"),
    ("pii.card", "number 5555555555554444.", "5555555555554444"),
    ("pii.iban", "IBAN: DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX", "DE89 3704 0044 0532 0130 00"),
    ("pii.iban", "pay to GB82WEST12345698765432 please", "GB82WEST12345698765432"),
    ("pii.ssn", "SSN 123-45-6789 on the form", "123-45-6789"),
    ("pii.ipv4", "Server at 10.0.12.7.", "10.0.12.7"),
    ("pii.ipv6", "host 2001:db8::8a2e:370:7334 is down", "2001:db8::8a2e:370:7334"),
    ("pii.ipv6", "link-local fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a"),
]


@pytest.mark.parametrize(("code", "text", "want"), POSITIVE)
def test_pii_positive(gs: GuardSet, code: str, text: str, want: str) -> None:
    f = found(gs, text)
    assert code in f, f
    assert spans_text(text, f[code]) == [want]
    assert want not in f[code].excerpt  # redacted
    assert f[code].guard == "pii" and f[code].field == "output"


NEGATIVE = [
    "Your order #48392011 shipped on 2024-01-15 at 10:30:00.",
    "Upgrade from version 1.2.3.4 to 1.2.3.5; build 2.0.1.",
    "Numbers 1.2.3.4.5 and 999.1.1.1 are not addresses.",
    "Test card 4111 1111 1111 1112 fails Luhn.",
    "Ref 1234567812345678 is an internal id.",
    "Invalid SSNs: 000-12-3456, 666-12-3456, 912-12-3456, 123-00-4567.",
    "Use icon@2x.png and logo@3x.webp for retina screens.",
    "The hash is 00392a4d8925f7ad4d144a20024d31e46f0f0f7b73a60b1d7ce88e0cc2bbbcd3.",
    "Trace id 5653a45c-4939-4aa5-9cf5-192bbf67da14 and MAC 00:1A:2B:3C:4D:5E.",
    "In C++ write std::vector<int> and a::b; the time is 12:34:56.",
    "Price: 1 299 000 EUR, or 1,299,000.00 USD; population 83 200 000.",
    "Ticket DE89 3704 0044 0532 0130 01 has a bad checksum.",
    "Dates: 01.02.2024, 2024/01/15, 15-01-2024.",
    "Order number 0012345678 and invoice 20240115001.",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_pii_near_misses(gs: GuardSet, text: str) -> None:
    f = found(gs, text)
    assert not [c for c in f if c.startswith("pii.")], f


def test_overlapping_kinds_resolve_by_priority(gs: GuardSet) -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00 and card 4111-1111-1111-1111"
    f = found(gs, text + ".")
    assert {c for c in f if c.startswith("pii.")} == {"pii.iban", "pii.card"}


def test_multiple_spans_one_finding(gs: GuardSet) -> None:
    text = "a@example.com, b@example.org and c@example.net"
    f = found(gs, text)
    assert spans_text(text, f["pii.email"]) == ["a@example.com", "b@example.org", "c@example.net"]
    assert f["pii.email"].excerpt == "a***@e***.com"


def test_non_ascii_offsets_are_characters(gs: GuardSet) -> None:
    text = "Grüße “Jürgen” — schreib an jürgen.x@example.de oder an juergen@example.de ✓"
    f = found(gs, text)
    # ASCII semantics: the non-ASCII part of a local part is not included, offsets are characters
    assert spans_text(text, f["pii.email"]) == ["rgen.x@example.de", "juergen@example.de"]


def test_pii_input_not_scanned_by_default(gs: GuardSet) -> None:
    assert "pii.email" not in found(gs, "ok", input="my mail is jane@example.com")

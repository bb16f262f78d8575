"""Checksums and shape checks that run only on candidate matches (never on whole texts).

They turn cheap regex candidates into precise findings: a 16-digit number is a card
only if it passes Luhn, an IBAN only if mod-97 holds, and so on.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re

__all__ = [
    "IBAN_LENGTHS",
    "card_ok",
    "iban_ok",
    "ipv4_ok",
    "ipv6_ok",
    "jwt_ok",
    "luhn_ok",
    "ssn_ok",
]


def luhn_ok(digits: str) -> bool:
    """Luhn mod-10 checksum over a string of ASCII digits.

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    if digits.isascii():  # fast path, same arithmetic as the loop below
        b = digits.encode()
        odd, even = b[-1::-2], b[-2::-2]
        return (sum(odd) - 48 * len(odd) + sum(_LUHN_DOUBLE[c] for c in even)) % 10 == 0
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _luhn_double(c: int) -> int:
    d = (c - 48) * 2
    return d - 9 if d > 9 else d


_LUHN_DOUBLE = tuple(_luhn_double(c) for c in range(128))


# First digit of every major card network (ISO/IEC 7812 major industry identifier 2-6).
_CARD_MII = frozenset("23456")
_MAESTRO_12 = ("5018", "5020", "5038", "56", "57", "58", "6304", "6759", "676", "6390")


def ean13_ok(digits: str) -> bool:
    """EAN-13 / GTIN-13 check digit (weights 1,3,1,3,...).

    >>> ean13_ok("4006381333931"), ean13_ok("4006381333932")
    (True, False)
    """
    head = digits[:12]
    if head.isascii():
        b = head.encode()
        ones, threes = b[0::2], b[1::2]
        total = sum(ones) - 48 * len(ones) + 3 * (sum(threes) - 48 * len(threes))
    else:
        total = sum((3 if i % 2 else 1) * (ord(c) - 48) for i, c in enumerate(head))
    return (10 - total % 10) % 10 == ord(digits[12]) - 48


def card_ok(candidate: str) -> bool:
    """Payment card: 13-19 digits (12 for Maestro), one consistent separator, a network
    prefix (MII 2-6, or JCB's legacy 1800), Luhn; 13-digit EAN barcodes are excluded.

    >>> card_ok("4111 1111 1111 1111"), card_ok("4111-1111 1111-1111"), card_ok("1234567812345670")
    (True, False, False)
    """
    sep = " " if " " in candidate else ""
    if "-" in candidate:
        if sep:
            return False
        sep = "-"
    digits = candidate.replace(sep, "") if sep else candidate
    n = len(digits)
    if n == 12:
        if not digits.startswith(_MAESTRO_12):
            return False
    elif not 13 <= n <= 19 or (digits[0] not in _CARD_MII and not digits.startswith("1800")):
        return False
    if n == 13 and ean13_ok(digits):
        return False
    if sep and any(len(g) < 3 for g in candidate.split(sep)):
        return False
    return len(set(digits)) > 1 and luhn_ok(digits)


# IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    """IBAN without spaces: known country, registry length, mod-97 == 1.

    >>> iban_ok("DE89370400440532013000"), iban_ok("DE89370400440532013001")
    (True, False)
    """
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    num = "".join(str(int(c, 36)) for c in moved)
    return int(num) % 97 == 1


def iban_prefix_len(candidate: str) -> int | None:
    """Length of the leading part of ``candidate`` that is a valid IBAN (spaces allowed).

    Regex candidates may run into a following code ("... 00 BIC ..."); this cuts the
    candidate at the country's registry length, at a group boundary.

    >>> s = "DE89 3704 0044 0532 0130 00 ABCD"
    >>> s[: iban_prefix_len(s)]
    'DE89 3704 0044 0532 0130 00'
    """
    need = IBAN_LENGTHS.get(candidate[:2])
    if need is None:
        return None
    count = 0
    for i, ch in enumerate(candidate):
        if ch != " ":
            count += 1
        if count == need:
            end = i + 1
            if end < len(candidate) and candidate[end] != " ":
                return None
            compact = candidate[:end].replace(" ", "")
            return end if iban_ok(compact) else None
    return None


def ssn_ok(candidate: str) -> bool:
    """US SSN AAA-GG-SSSS: area not 000/666/9xx, group not 00, serial not 0000.

    >>> ssn_ok("123-45-6789"), ssn_ok("666-12-3456"), ssn_ok("912-12-3456")
    (True, False, False)
    """
    area, group, serial = candidate.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def ipv4_ok(candidate: str) -> bool:
    """Dotted quad with octets 0-255 and no zero-padded octets.

    >>> ipv4_ok("192.168.1.20"), ipv4_ok("999.1.1.1"), ipv4_ok("01.02.03.04")
    (True, False, False)
    """
    if candidate.isascii():
        return _IPV4.fullmatch(candidate) is not None
    parts = candidate.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts
    )


def ipv6_ok(candidate: str) -> bool:
    """A real IPv6 address with at least two non-empty groups and six characters
    (not ``::``, a time, or C++'s ``a::b``).

    >>> ipv6_ok("2001:db8::8a2e:370:7334"), ipv6_ok("10:30:00"), ipv6_ok("::"), ipv6_ok("a::b")
    (True, False, False, False)
    """
    if len(candidate) < 6 or sum(1 for g in candidate.split(":") if g) < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def jwt_ok(candidate: str) -> bool:
    """Three base64url parts whose header decodes to a JSON object with ``alg``.

    >>> jwt_ok("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln")
    True
    >>> jwt_ok("eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.c2ln")
    False
    """
    header = candidate.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        obj = json.loads(raw)
    except (binascii.Error, ValueError):
        return False
    return isinstance(obj, dict) and "alg" in obj

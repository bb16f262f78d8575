"""Redaction for finding excerpts: enough shape to triage an alert, never the value.

Alerts leave the process (``rollguard.alerts``, logs, dashboards); an excerpt must not
re-leak what the guard caught.
"""

from __future__ import annotations

__all__ = ["keep_prefix", "mask_digits", "redact_email", "redact_ip"]

_MAX_STARS = 12


def redact_email(s: str) -> str:
    """Keep the first character of the local part and of the domain, and the TLD.

    >>> redact_email("jane.doe@example.com")
    'j***@e***.com'
    """
    local, _, domain = s.partition("@")
    tld = domain.rsplit(".", 1)[-1]
    return f"{local[:1]}***@{domain[:1]}***.{tld}"


def mask_digits(s: str, keep_last: int = 0) -> str:
    """Replace digits by ``*`` except the last ``keep_last``; separators keep the shape.

    >>> mask_digits("4111 1111 1111 1234", keep_last=4)
    '**** **** **** 1234'
    >>> mask_digits("+44 20 7946 0958", keep_last=2)
    '+** ** **** **58'
    """
    masked = s.translate(_STAR_DIGITS)
    if keep_last <= 0:
        return masked
    out = list(masked)
    left = keep_last
    for i in range(len(s) - 1, -1, -1):
        if s[i].isdigit():
            out[i] = s[i]
            left -= 1
            if not left:
                break
    return "".join(out)


_STAR_DIGITS = str.maketrans(dict.fromkeys("0123456789", "*"))


def keep_prefix(s: str, n: int) -> str:
    """Keep a non-secret prefix (e.g. ``AKIA``, ``ghp_``) and star the rest (capped).

    >>> keep_prefix("AKIAIOSFODNN7EXAMPLE", 4)
    'AKIA************'
    """
    return s[:n] + "*" * min(max(len(s) - n, 0), _MAX_STARS)


def redact_ip(s: str) -> str:
    """Keep the first IPv4 octet or IPv6 group.

    >>> redact_ip("192.168.1.20"), redact_ip("2001:db8::1")
    ('192.*.*.*', '2001:****')
    """
    if ":" in s:
        return s.split(":", 1)[0] + ":****"
    return s.split(".", 1)[0] + ".*.*.*"

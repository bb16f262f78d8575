"""Pattern tables of the built-in pattern guards (PII, secrets, refusals, injection, banned).

Each entry has a precise Python ``re`` form plus a hyperscan form that matches a
superset starting no later (see ``engine``). Validators keep precision: checksums,
registry lengths, and context rules run only on candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import validators as v
from .engine import PatternSpec
from .redact import keep_prefix, mask_digits, redact_email, redact_ip

__all__ = [
    "INJECTION_FIELDS",
    "PII_KINDS",
    "REFUSAL_LANGUAGES",
    "SECRET_KINDS",
    "banned_specs",
    "injection_specs",
    "pii_specs",
    "refusal_specs",
    "regex_hs_compatible",
    "secret_specs",
]

Span = tuple[int, int]
Match = re.Match[str]

# ----------------------------------------------------------------------------- PII

_FILE_EXT_TLDS = frozenset(
    ("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "js", "mjs", "ts", "tsx", "jsx",
     "css", "scss", "py", "rb", "go", "rs", "java", "json", "yaml", "yml", "md", "txt", "pdf", "zip", "gz",
     "tar", "sh", "exe", "dll", "so")
)  # fmt: skip


_LOCAL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"


def _letters_except(words: Iterable[str], lo: int, hi: int) -> str:
    """A regex (no flags needed) matching ``[A-Za-z]{lo,hi}`` except the given lower-case
    words in any case: hyperscan has no lookarounds, so the exclusion is spelled out along
    the words' trie.

    >>> rx = re.compile(_letters_except(["png", "js"], 2, 5))
    >>> [w for w in ("png", "PNG", "pn", "pngx", "js", "jsx", "com", "a", "abcdef") if rx.fullmatch(w)]
    ['pn', 'pngx', 'jsx', 'com']
    """
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for c in w:
            node = node.setdefault(c, {})
        node[""] = {}

    def both(c: str) -> str:
        return c + c.upper()

    def rec(node: dict[str, Any], depth: int) -> str | None:
        """Regex for the rest of a word below ``node`` (``None``: no such word)."""
        alts = []
        if depth < hi:
            kids = sorted(k for k in node if k)
            rest = "".join(both(c) for c in "abcdefghijklmnopqrstuvwxyz" if c not in kids)
            tail_lo, tail_hi = max(0, lo - depth - 1), hi - depth - 1
            if rest:
                alts.append(f"[{rest}]" + (f"[A-Za-z]{{{tail_lo},{tail_hi}}}" if tail_hi else ""))
            for c in kids:
                sub = rec(node[c], depth + 1)
                if sub is not None:
                    alts.append(f"[{both(c)}]{sub}")
        end_ok = depth >= lo and "" not in node
        if not alts:
            return "" if end_ok else None
        return f"(?:{'|'.join(alts)})" + ("?" if end_ok else "")

    out = rec(trie, 0)
    assert out, "every word excluded"
    return out


def _email_starts(text: str, lo: int, hi: int) -> list[int]:
    """Where an address can start in ``[lo, hi)``: the first character of the run of
    local-part characters before an ``@`` (inside the run the lookbehind fails; a run
    longer than 64 characters is no local part). The ``@`` of an address starting at
    ``s`` is at ``s + 1 .. s + 64``."""
    out = []
    stop = hi + 64
    at = text.find("@", lo + 1, stop)
    while at != -1:
        seg = text[max(at - 65, 0) : at]
        run = len(seg) - len(seg.rstrip(_LOCAL_CHARS))
        s = at - run
        if 0 < run <= 64 and lo <= s < hi:
            out.append(s)
        at = text.find("@", at + 1, stop)
    return out


def _email(text: str, m: Match) -> Span | None:
    tld = m.group(0).rsplit(".", 1)[-1].lower()
    return None if tld in _FILE_EXT_TLDS else m.span()


_PHONE_WORDS = (
    r"phone|tel\b|tel\.|telephone|call|mobile|cell|fax|whatsapp|sms|dial|reach\s+(?:me|us)|line\b|"
    r"telefon|handy|mobil|anrufen|ruf\b|rufnummer|t[ée]l[ée]phone|t[ée]l\.|portable|appel|joindre|"
    r"tel[ée]fono|m[óo]vil|celular|ll[aá]m"
)
_PHONE_CONTEXT = re.compile(f"\\b(?:{_PHONE_WORDS})", re.IGNORECASE | re.ASCII)
_PHONE_CONTEXT_CHARS = 32
_NANP = re.compile(r"\(?[2-9]\d{2}\)?[ .-]?\d{3}[.-]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?", re.ASCII)
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}", re.ASCII)
_EXT = re.compile(r"\s?(?:x|ext\.?)\s?\d{1,5}$", re.ASCII)


def _phone(text: str, m: Match) -> Span | None:
    """Accept international (+/00), parenthesised area codes, NANP shape, trunk-0 with
    separators; bare digit runs only with a phone word just before them."""
    s = m.group(0)
    main = _EXT.sub("", s) if "x" in s else s
    digits = len(main.translate(_KEEP_DIGITS)) - main.count("(0)")
    if not 7 <= digits <= 15 or _DATE_LIKE.fullmatch(s):
        return None
    has_sep = len(main.translate(_KEEP_DIGITS)) != len(main)
    start = m.start()
    if start >= 2 and text[start - 1] == " " and text[start - 2].isdigit():
        return None  # the tail of a longer spaced code ("DE89 3704 0044 ..."), not a number of its own
    if s[0] == "+":
        ok = digits >= 8
    elif s.startswith("00"):
        ok = has_sep and digits >= 10 and s[2:3] in "123456789"
    elif s[0] == "(":
        ok = digits >= 9
    elif _NANP.fullmatch(s):
        ok = True
    elif s[0] == "0" and s[1] != "0" and has_sep:
        ok = 9 <= digits <= 12
    else:
        ok = False
    if not ok:
        ctx = _PHONE_CONTEXT.search(text, max(0, start - _PHONE_CONTEXT_CHARS), start)
        ok = digits >= 9 and ctx is not None
    return m.span() if ok else None


_NOT_CARD_CONTEXT = re.compile(r"barcode|\bean\b|gtin|isbn|\bupc\b|\bsku\b|tracking", re.IGNORECASE)


def _card(text: str, m: Match) -> Span | None:
    if not v.card_ok(m.group(0)):
        return None
    if _NOT_CARD_CONTEXT.search(text, max(0, m.start() - 32), m.start()):  # "barcode 4006381333931"
        return None
    return m.span()


def _iban(text: str, m: Match) -> Span | None:
    n = v.iban_prefix_len(m.group(0))
    return None if n is None else (m.start(), m.start() + n)


def _ssn(text: str, m: Match) -> Span | None:
    return m.span() if v.ssn_ok(m.group(0)) else None


_VERSION_NEAR = re.compile(r"\bv\s*$|version|release|build|firmware|\bver\b", re.IGNORECASE)


def _version_near(text: str, start: int) -> bool:
    """``_VERSION_NEAR`` in the 24 characters before ``start`` ("version 1.2.3.4"), with
    substring shortcuts that give the same answer without running the regex."""
    lo = max(0, start - 24)
    window = text[lo:start].lower()
    if "version" in window or "release" in window or "build" in window or "firmware" in window:
        return True  # ASCII letters (lower() maps only ASCII letters and K to them): a match
    if window.isascii() and "v" not in window:
        return False  # every remaining alternative needs a "v" (caseless ASCII: v or V)
    return _VERSION_NEAR.search(text, lo, start) is not None


def _ipv4(text: str, m: Match) -> Span | None:
    start = m.start()
    if _version_near(text, start) or not v.ipv4_ok(m.group(0)):
        return None
    return m.span()


def _ipv6(text: str, m: Match) -> Span | None:
    return m.span() if v.ipv6_ok(m.group(0)) else None


_KEEP_DIGITS = str.maketrans("", "", "".join(chr(c) for c in range(128) if not chr(c).isdigit()))
# One alternative per acceptance rule of _phone (structural shapes); the context rule
# is covered by the ``near`` anchor on the phone words.
# Each also consumes the character before (what the re lookbehind forbids), which
# keeps digits inside hashes and codes from waking the phone walk.
_PB = r"(?:^|[^\w+/.\-])"
# Cheap prefixes where a longer form costs hyperscan time on digit-heavy text: "+", "00"
# and "(" numbers are rare in prose, so their prefix alone is a tight enough superset.
# The trunk-0 rule needs a separator: its first run of digits (the 0 and k <= 11 more) ends
# in one of " .-/(", and >= 9 digits means >= 8 - k more digits/separators follow. So a
# bare 13-digit barcode "0536128392906" opens no phone region (the context rule has its
# own anchor).
_PHONE_TRUNK = "|".join(
    (rf"\d{{{k}}}" if k else "") + rf"[ .\-/(][\d .\-/()]{{{8 - k}}}" for k in range(8)
) + r"|\d{8,11}[ .\-/(]"
_PHONE_HS = (
    rf"{_PB}(?:\+[(]?\d|00[1-9]|\(\d)", rf"{_PB}\(?[2-9]\d{{2}}\)?[ .-]?\d{{3}}[.-]\d{{4}}",
    rf"{_PB}0(?:{_PHONE_TRUNK})",
)
# No trailing \b, and "reach\s" instead of "reach\s+(?:me|us)" (bounded width: no start-of-match
# tracking): a superset of _PHONE_CONTEXT that starts at the same place.
_PHONE_NEAR = "\\b(?:" + _PHONE_WORDS.replace("\\b", "").replace(r"reach\s+(?:me|us)", r"reach\s") + ")"
_PHONE_RE = (
    r"(?<![\w+/.-])(?:\+|00)?(?:\d{1,12}|\(\d{1,5}\))(?:[ .\-/]?\(0\)[ .\-/]?)?"
    r"(?:[ .\-/]{1,2}\d{1,12}|[ .\-/]{0,2}\(\d{1,5}\)|(?<=\))\d{1,12}){0,6}"
    r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w/]|[.-]\d)"
)

# Vetoes (see PatternSpec.veto): a context word that makes the validator reject every
# candidate starting where the hyperscan form's match starts. The card form is fixed width
# (12 characters after the boundary); the IPv4 form's start follows from its end (the
# boundary before the digits and dots cannot be a digit or dot). Each word must lie inside
# the validator's window before the candidate (32 characters for cards, 24 for IPv4), so the
# gap allowed between the word and the candidate is the window minus the word (minus the
# boundary character for IPv4). A veto may cover fewer cases than the validator (the card
# gap has no digits), never more. Only words the validator finds without word boundaries:
# its \b is Unicode-aware, hyperscan's is ASCII.
_CARD_HS = r"(?:^|[^\w-])[1-6]\d[\d -]{10}"
_CARD_VETO = tuple(  # no digits in the gap: "barcode 4006381333931" vetoes one form match, not three
    rf"{w}\D{{0,{32 - len(w)}}}[1-6]\d[\d -]{{10}}" for w in ("barcode", "gtin", "isbn", "tracking")
)
_IPV4_HS = r"(?:^|[^\w.])(?:\d{1,3}\.){3}\d{1,3}"
_IPV4_VETO = tuple(
    rf"{w}[\s\S]{{0,{23 - len(w)}}}[^\w.](?:\d{{1,3}}\.){{3}}\d{{1,3}}"
    for w in ("version", "release", "build", "firmware")
)

_ALNUM_STAR = str.maketrans(dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "*"))

# kind -> specs; priority: a lower-priority span overlapping a higher one is dropped
_PII: dict[str, tuple[PatternSpec, ...]] = {
    "email": (
        PatternSpec(
            "pii", "pii.email",
            r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
            r"[A-Za-z]{2,24}(?![\w-])",
            # from the @ (the local part is <= 64 characters before it: lead) through a TLD that
            # is not a file extension and its boundary, so "icon@2x.png" opens no region at all
            hs=rf"@[A-Za-z0-9.-]*\.(?:{_letters_except(_FILE_EXT_TLDS, 2, 24)})(?:[^\w-]|$)", lead=64,
            literals=("@",), validate=_email, redact=redact_email, locate=_email_starts, priority=50,
        ),
    ),
    "iban": (
        PatternSpec(
            "pii", "pii.iban",
            r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)",
            hs=r"(?:^|\W)[A-Z]{2}\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}", validate=_iban,
            redact=lambda s: s[:2] + mask_digits(s[2:]).translate(_ALNUM_STAR), priority=40,
        ),
    ),
    "card": (
        PatternSpec(
            "pii", "pii.card", r"(?<![\w-])(?:\d[ -]?){11,18}\d(?![\w-]|[.,]\d)",
            # accepted cards start with 1-6 and two digits (groups >= 3, see card_ok), then >= 10
            # more digits/separators: the 12-character prefix is enough (and cheaper to scan for)
            hs=_CARD_HS, veto=_CARD_VETO,
            validate=_card, redact=lambda s: mask_digits(s, 4), priority=30,
            start=r"(?<![\w-])\d",
        ),
    ),
    "ssn": (
        PatternSpec(
            "pii", "pii.ssn", r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])", hs=r"(?:^|[^\w-])\d{3}-\d{2}-\d{4}",
            literals=("-",), validate=_ssn, redact=mask_digits, priority=20,
        ),
    ),
    "ip": (
        PatternSpec(
            "pii", "pii.ipv6",
            r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\d)",
            hs=r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:", literals=(":",), validate=_ipv6, redact=redact_ip,
            priority=15,
        ),
        PatternSpec(
            "pii", "pii.ipv4", r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)",
            hs=_IPV4_HS, veto=_IPV4_VETO,
            literals=(".",), validate=_ipv4, redact=redact_ip, priority=12,
        ),
    ),
    "phone": (
        PatternSpec(
            "pii", "pii.phone", _PHONE_RE, hs=_PHONE_HS, validate=_phone, start=r"(?<![\w+/.-])[+(0-9]",
            near=_PHONE_NEAR, near_chars=_PHONE_CONTEXT_CHARS + 1,
            redact=lambda s: mask_digits(s, 2), priority=10,
        ),
    ),
}  # fmt: skip
PII_KINDS: tuple[str, ...] = ("email", "phone", "card", "iban", "ssn", "ip")


def pii_specs(kinds: Iterable[str]) -> list[PatternSpec]:
    """Specs for the selected PII kinds, in a stable order."""
    want = set(kinds)
    return [s for k in _PII if k in want for s in _PII[k]]


# ----------------------------------------------------------------------------- secrets


def _mixed(body: str) -> bool:
    """Random tokens mix upper, lower and digits; slugs and words do not."""
    return (
        any(c.isdigit() for c in body) and any(c.isupper() for c in body) and any(c.islower() for c in body)
    )


def _openai(text: str, m: Match) -> Span | None:
    body = m.group(0)[3:]
    for p in ("proj-", "svcacct-", "admin-"):
        if body.startswith(p):
            body = body[len(p) :]
            break
    return m.span() if len(body) >= 20 and _mixed(body) else None


def _aws_secret(text: str, m: Match) -> Span | None:
    val = m.group(1)
    return m.span(1) if _mixed(val) or "/" in val or "+" in val else None


def _slack(text: str, m: Match) -> Span | None:
    return m.span() if len(m.group(0)) >= 24 else None


def _jwt(text: str, m: Match) -> Span | None:
    return m.span() if v.jwt_ok(m.group(0)) else None


def _pem_excerpt(s: str) -> str:
    return s.split("-----", 2)[1].strip() + " [redacted]"


_NB = r"(?<![A-Za-z0-9_-])"  # no token character before
_NA = r"(?![A-Za-z0-9_-])"  # no token character after
_AWS_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA")

_SECRETS: dict[str, tuple[PatternSpec, ...]] = {
    "aws": (
        PatternSpec(
            "secrets", "secrets.aws_access_key",
            rf"(?<![A-Za-z0-9])(?:{'|'.join(_AWS_PREFIXES)})[A-Z2-7]{{16}}(?![A-Za-z0-9])",
            hs=rf"(?:{'|'.join(_AWS_PREFIXES)})[A-Z2-7]{{16}}", literals=_AWS_PREFIXES,
            redact=lambda s: keep_prefix(s, 4), priority=10,
        ),
        PatternSpec(
            "secrets", "secrets.aws_secret_key",
            r"(?:aws[\w.-]{0,20}?(?:secret|sk)|secret_?access_?key)[\w.-]{0,20}?[\"']?\s{0,3}(?::|=>?|:=)\s{0,3}"
            r"[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
            hs=r"aws[\w.-]{0,20}(?:secret|sk)|secret_?access_?key", caseless=True, literals=("aws", "access"),
            validate=_aws_secret, redact=lambda s: keep_prefix(s, 0), priority=10,
        ),
    ),
    "github": (
        PatternSpec(
            "secrets", "secrets.github_token", rf"{_NB}gh[pousr]_[A-Za-z0-9]{{36}}{_NA}",
            hs=r"gh[pousr]_[A-Za-z0-9]{36}", literals=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
            redact=lambda s: keep_prefix(s, 4), priority=10,
        ),
        PatternSpec(
            "secrets", "secrets.github_token", rf"{_NB}github_pat_[A-Za-z0-9]{{22}}_[A-Za-z0-9]{{59}}{_NA}",
            hs=r"github_pat_[A-Za-z0-9]{22}_", literals=("github_pat_",),
            redact=lambda s: keep_prefix(s, 11), priority=10,
        ),
    ),
    "slack": (
        PatternSpec(
            "secrets", "secrets.slack_token",
            rf"{_NB}xox[abposr]-(?:[0-9A-Za-z]+-){{1,5}}[0-9A-Za-z]{{6,}}{_NA}",
            hs=r"xox[abposr]-[0-9A-Za-z]", literals=("xox",), validate=_slack,
            redact=lambda s: keep_prefix(s, 5), priority=10,
        ),
        PatternSpec(
            "secrets", "secrets.slack_webhook",
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,}",
            hs=r"https://hooks\.slack\.com/", literals=("hooks.slack.com",),
            redact=lambda s: keep_prefix(s, 32), priority=10,
        ),
    ),
    "openai": (
        PatternSpec(
            "secrets", "secrets.openai_key", rf"{_NB}sk-(?!ant-)[A-Za-z0-9_-]{{20,}}{_NA}",
            hs=r"sk-[A-Za-z0-9_-]{20}", literals=("sk-",), validate=_openai,
            redact=lambda s: keep_prefix(s, 8 if s.startswith("sk-proj-") else 3), priority=10,
        ),
    ),
    "anthropic": (
        PatternSpec(
            "secrets", "secrets.anthropic_key", rf"{_NB}sk-ant-[a-z]{{2,8}}\d{{2}}-[A-Za-z0-9_-]{{32,}}{_NA}",
            hs=r"sk-ant-[a-z]{2,8}\d{2}-", literals=("sk-ant-",),
            redact=lambda s: keep_prefix(s, 7), priority=10,
        ),
    ),
    "google": (
        PatternSpec(
            "secrets", "secrets.google_api_key", rf"{_NB}AIza[0-9A-Za-z_-]{{35}}{_NA}",
            hs=r"AIza[0-9A-Za-z_-]{35}", literals=("AIza",), redact=lambda s: keep_prefix(s, 4), priority=10,
        ),
    ),
    "stripe": (
        PatternSpec(
            "secrets", "secrets.stripe_key",
            r"(?<![A-Za-z0-9_])[sr]k_(?:live|test)_[0-9A-Za-z]{20,}(?![A-Za-z0-9_])",
            hs=r"[sr]k_(?:live|test)_[0-9A-Za-z]{20}", literals=("k_live_", "k_test_"),
            redact=lambda s: keep_prefix(s, 8), priority=10,
        ),
    ),
    "private_key": (
        PatternSpec(
            "secrets", "secrets.private_key",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)?",
            hs=r"-----BEGIN ", literals=("PRIVATE KEY",), redact=_pem_excerpt,
            priority=20,
        ),
    ),
    "jwt": (
        PatternSpec(
            "secrets", "secrets.jwt",
            rf"{_NB}eyJ[A-Za-z0-9_-]{{4,}}\.[A-Za-z0-9_-]{{4,}}\.[A-Za-z0-9_-]*{_NA}",
            hs=r"eyJ[A-Za-z0-9_-]{4}", literals=("eyJ",), validate=_jwt,
            redact=lambda s: keep_prefix(s, 3), priority=5,
        ),
    ),
}  # fmt: skip
SECRET_KINDS: tuple[str, ...] = tuple(_SECRETS)


def secret_specs(kinds: Iterable[str]) -> list[PatternSpec]:
    """Specs for the selected secret kinds."""
    want = set(kinds)
    return [s for k in _SECRETS if k in want for s in _SECRETS[k]]


# ----------------------------------------------------------------------------- refusals

_AP = "['’]"
_IM = rf"I(?:{_AP}m|\s{{1,8}}am)"
_CANT = rf"(?:can{_AP}?t|cannot|can\s{{1,8}}not|won{_AP}?t|will\s{{1,8}}not)"
_VERBS = (
    r"(?:help|assist|provide|do|comply|fulfil|fulfill|answer|share|create|generate|write|support|engage|"
    r"discuss|give|continue|complete)"
)

# (language, code) -> (label, regex, literals for the re prefilter)
_REFUSAL: dict[tuple[str, str], tuple[str, ...]] = {
    ("en", "refusal.phrase"): (
        rf"\b{_IM}\s{{1,8}}(?:so\s{{1,8}}|very\s{{1,8}}|truly\s{{1,8}}|really\s{{1,8}})?sorry,?\s{{1,8}}(?:but\s{{1,8}})?(?:I\s{{1,8}}{_CANT}|{_IM}\s{{1,8}}(?:unable|not\s{{1,8}}able))"
        rf"|\b(?:sorry|unfortunately),?\s{{1,8}}(?:but\s{{1,8}})?(?:I\s{{1,8}}{_CANT}|{_IM}\s{{1,8}}(?:unable|not\s{{1,8}}able)\s{{1,8}}to)\s{{1,8}}{_VERBS}"
        rf"|\bI\s{{1,8}}{_CANT}\s{{1,8}}(?:help|assist)\s{{1,8}}(?:you\s{{1,8}})?with\s{{1,8}}(?:that|this|your\s{{1,8}}request|the\s{{1,8}}request|requests)"
        rf"|\b{_IM}\s{{1,8}}(?:unable|not\s{{1,8}}able)\s{{1,8}}to\s{{1,8}}(?:help|assist|comply|fulfil|fulfill|provide|answer)"
        rf"|\bI\s{{1,8}}{_CANT}\s{{1,8}}(?:comply|fulfil|fulfill)"
        rf"|\bI\s{{1,8}}must\s{{1,8}}(?:respectfully\s{{1,8}})?decline"
        rf"|\bAs\s{{1,8}}an\s{{1,8}}AI(?:\s{{1,8}}language)?\s{{1,8}}model"
        rf"|\bAs\s{{1,8}}an\s{{1,8}}AI(?:\s{{1,8}}assistant)?,?\s{{1,8}}I\s{{1,8}}(?:{_CANT}|don{_AP}?t|do\s{{1,8}}not|have\s{{1,8}}no)",
        "sorry", "unfortunately", "can", "won", "will", "able", "decline", "ai",
    ),
    ("en", "refusal.non_answer"): (
        rf"\bI\s{{1,8}}(?:don{_AP}?t|do\s{{1,8}}not)\s{{1,8}}know\b"
        rf"|\bI\s{{1,8}}(?:don{_AP}?t|do\s{{1,8}}not)\s{{1,8}}have\s{{1,8}}(?:enough\s{{1,8}}|sufficient\s{{1,8}}|any\s{{1,8}})?(?:information|data|details|context)"
        rf"\s{{1,8}}(?:about|on|to|regarding)"
        rf"|\bI\s{{1,8}}(?:don{_AP}?t|do\s{{1,8}}not)\s{{1,8}}have\s{{1,8}}access\s{{1,8}}to\s{{1,8}}(?:real-time|that|this|your|the\s{{1,8}}internet)"
        rf"|\bI\s{{1,8}}have\s{{1,8}}no\s{{1,8}}(?:information|knowledge|data)\s{{1,8}}(?:about|on|regarding)",
        "know", "have",
    ),
    ("de", "refusal.phrase"): (
        r"\bEs\s{1,8}tut\s{1,8}mir\s{1,8}(?:sehr\s{1,8})?leid,?\s{1,8}(?:aber\s{1,8})?(?:ich\s{1,8}kann|das\s{1,8}kann\s{1,8}ich|ich\s{1,8}bin\s{1,8}nicht\s{1,8}in\s{1,8}der\s{1,8}Lage|ich\s{1,8}darf)"
        r"|\bLeider\s{1,8}(?:kann|darf)\s{1,8}ich\s{1,8}(?:Ihnen\s{1,8}|dir\s{1,8}|euch\s{1,8})?(?:dabei\s{1,8}|damit\s{1,8}|hierbei\s{1,8}|bei\s{1,8}(?:dieser|Ihrer|deiner)\s{1,8}Anfrage\s{1,8})?"
        r"(?:nicht|keine)\s{1,8}(?:helfen|weiterhelfen|behilflich|unterstützen|Auskunft)"
        r"|\bIch\s{1,8}kann\s{1,8}(?:Ihnen\s{1,8}|dir\s{1,8})?(?:dabei\s{1,8}|damit\s{1,8}|hierbei\s{1,8}|bei\s{1,8}(?:dieser|Ihrer|deiner)\s{1,8}Anfrage\s{1,8})?nicht\s{1,8}"
        r"(?:helfen|weiterhelfen|behilflich\s{1,8}sein|unterstützen)"
        r"|\bIch\s{1,8}bin\s{1,8}(?:leider\s{1,8})?nicht\s{1,8}in\s{1,8}der\s{1,8}Lage"
        r"|\bAls\s{1,8}(?:ein\s{1,8})?KI(?:-Sprachmodell|-Modell|-Assistent|\s{1,8}Sprachmodell)"
        r"|\bIch\s{1,8}muss\s{1,8}(?:das\s{1,8}|diese\s{1,8}Anfrage\s{1,8})?(?:leider\s{1,8})?ablehnen",
        "leid", "leider", "kann", "lage", "ki", "ablehnen",
    ),
    ("de", "refusal.non_answer"): (
        r"\bIch\s{1,8}wei(?:ß|ss)\s{1,8}(?:es\s{1,8}|das\s{1,8})?(?:leider\s{1,8})?nicht\b"
        r"|\bIch\s{1,8}habe\s{1,8}(?:leider\s{1,8})?keine\s{1,8}(?:Informationen|Kenntnis|Daten)\s{1,8}(?:über|zu|darüber)"
        r"|\bDazu\s{1,8}(?:habe\s{1,8}ich|liegen\s{1,8}mir)\s{1,8}(?:leider\s{1,8})?keine\s{1,8}Informationen",
        "wei", "keine",
    ),
    ("fr", "refusal.phrase"): (
        rf"\b(?:Je\s{{1,8}}suis\s{{1,8}})?(?:vraiment\s{{1,8}})?d[ée]sol[ée]e?,?\s{{1,8}}(?:mais\s{{1,8}})?je\s{{1,8}}ne\s{{1,8}}(?:peux|suis\s{{1,8}}pas\s{{1,8}}en\s{{1,8}}mesure)"
        rf"|\bJe\s{{1,8}}ne\s{{1,8}}peux\s{{1,8}}pas\b"
        rf"|\bJe\s{{1,8}}ne\s{{1,8}}suis\s{{1,8}}pas\s{{1,8}}en\s{{1,8}}mesure\s{{1,8}}de"
        rf"|\bEn\s{{1,8}}tant\s{{1,8}}qu(?:e\s{{1,8}}mod[èe]le\s{{1,8}}de\s{{1,8}}langage|e\s{{1,8}}(?:simple\s{{1,8}})?assistant|{_AP}\s{{0,8}}(?:IA|intelligence\s{{1,8}}artificielle))"
        rf"|\bJe\s{{1,8}}dois\s{{1,8}}(?:malheureusement\s{{1,8}})?refuser"
        rf"|\bIl\s{{1,8}}m{_AP}est\s{{1,8}}impossible\s{{1,8}}de",
        "sol", "peux", "mesure", "tant", "refuser", "impossible",
    ),
    ("fr", "refusal.non_answer"): (
        rf"\bJe\s{{1,8}}ne\s{{1,8}}sais\s{{1,8}}pas\b"
        rf"|\bJe\s{{1,8}}n{_AP}ai\s{{1,8}}pas\s{{1,8}}(?:assez\s{{1,8}}d{_AP}|suffisamment\s{{1,8}}d{_AP}|d{_AP}|accès\s{{1,8}}(?:à\s{{1,8}}|aux\s{{1,8}}))informations?",
        "sais", "information",
    ),
    ("es", "refusal.phrase"): (
        r"\bLo\s{1,8}siento(?:\s{1,8}mucho)?,?\s{1,8}(?:pero\s{1,8})?no\s{1,8}(?:puedo|me\s{1,8}es\s{1,8}posible|estoy\s{1,8}en\s{1,8}condiciones)"
        r"|\bNo\s{1,8}puedo\s{1,8}(?:ayudar(?:te|le|les)?|asistir(?:te|le)?|proporcionar|cumplir|hacer\s{1,8}eso|responder)"
        r"|\bComo\s{1,8}(?:un\s{1,8})?modelo\s{1,8}de\s{1,8}lenguaje"
        r"|\bComo\s{1,8}(?:una\s{1,8})?(?:IA|inteligencia\s{1,8}artificial),?\s{1,8}no\s{1,8}(?:puedo|tengo)"
        r"|\bNo\s{1,8}estoy\s{1,8}en\s{1,8}condiciones\s{1,8}de"
        r"|\bDebo\s{1,8}(?:rechazar|declinar)"
        r"|\bLamentablemente,?\s{1,8}no\s{1,8}puedo",
        "siento", "puedo", "como", "condiciones", "debo",
    ),
    ("es", "refusal.non_answer"): (
        r"\bNo\s{1,8}(?:lo\s{1,8})?sé(?![\w])"
        r"|\bNo\s{1,8}tengo\s{1,8}(?:suficiente\s{1,8})?(?:información|datos|acceso)",
        "sé", "tengo",
    ),
}  # fmt: skip
REFUSAL_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es")


def _refusal_rule(start_window: int, short_output_chars: int) -> Callable[[str, Match], Span | None]:
    """A refusal phrase counts near the start of the output, or anywhere in a short one.

    A long helpful answer that quotes "As an AI language model" mid-way is not a refusal.
    """

    def rule(text: str, m: Match) -> Span | None:
        lead = len(text) - len(text.lstrip())
        if m.start() - lead <= start_window or len(text.strip()) <= short_output_chars:
            return m.span()
        return None

    return rule


def refusal_specs(
    languages: Sequence[str], *, non_answers: bool, start_window: int, short_output_chars: int
) -> list[PatternSpec]:
    """One spec per (language, refusal|non_answer); the excerpt is the language label."""
    rule = _refusal_rule(start_window, short_output_chars)
    out = []
    for (lang, code), (regex, *lits) in _REFUSAL.items():
        if lang not in languages or (code == "refusal.non_answer" and not non_answers):
            continue
        out.append(
            PatternSpec(
                "refusal", code, regex, hs=regex.replace(r"(?![\w])", ""), caseless=True,
                literals=tuple(lits), validate=rule,
                label=f"{lang}:{code.split('.')[1]}", priority=10 if code == "refusal.phrase" else 5,
            )
        )  # fmt: skip
    return out


# ----------------------------------------------------------------------------- injection

# (field, code, regex, caseless, literals)
_INJECTION: tuple[tuple[str, str, str, bool, tuple[str, ...]], ...] = (
    ("input", "injection.ignore_instructions",
     r"\b(?:ignore|disregard|forget|override|bypass|skip)\s{1,8}(?:(?:all|any|the|your|my|of|these|those|every)\s{1,8})*"
     r"(?:previous|prior|above|earlier|preceding|former|initial|original|system|developer|safety)\s{1,8}"
     r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|guardrails|messages?|context|commands?|constraints)"
     r"|\b(?:ignoriere|ignorier|ignorieren\s{1,8}Sie|vergiss|vergessen\s{1,8}Sie)\s{1,8}(?:(?:alle|die|deine|Ihre)\s{1,8})*"
     r"(?:vorherigen|bisherigen|obigen|vorangegangenen|früheren)\s{1,8}(?:Anweisungen|Instruktionen|Befehle|Regeln)"
     r"|\b(?:ignore[rz]?|oublie[rz]?)\s{1,8}(?:toutes\s{1,8})?(?:les\s{1,8}|tes\s{1,8}|vos\s{1,8})?(?:instructions|consignes|règles)\s{1,8}"
     r"(?:précédentes|ci-dessus|antérieures)"
     r"|\b(?:ignora|ignore|ignorar|olvida)\s{1,8}(?:todas\s{1,8})?(?:las\s{1,8}|tus\s{1,8})?(?:instrucciones|indicaciones|reglas)\s{1,8}"
     r"(?:anteriores|previas)",
     True, ("ignor", "disregard", "forget", "override", "bypass", "skip", "vergiss", "vergessen", "oubli",
            "olvida")),
    ("input", "injection.jailbreak_persona",
     r"\b(?:you\s{1,8}are\s{1,8}now|act\s{1,8}as|pretend\s{1,8}to\s{1,8}be|from\s{1,8}now\s{1,8}on\s{1,8}you\s{1,8}are)\s{1,8}(?:an?\s{1,8})?"
     r"(?:jailbroken|unfiltered|uncensored|unrestricted)\b"
     r"|\bdo\s{1,8}anything\s{1,8}now\b"
     r"|\b(?:without|no)\s{1,8}(?:any\s{1,8})?(?:ethical|moral)\s{1,8}(?:guidelines|restrictions|filters|limitations|boundaries)",
     True, ("now", "act", "pretend", "anything", "ethical", "moral")),
    ("input", "injection.jailbreak_persona",
     r"\b(?i:you\s{1,8}are\s{1,8}now|act\s{1,8}as|pretend\s{1,8}to\s{1,8}be|from\s{1,8}now\s{1,8}on\s{1,8}you\s{1,8}are)\s{1,8}(?:an?\s{1,8})?(?:DAN|STAN|DUDE)\b",
     False, ("DAN", "STAN", "DUDE")),
    ("input", "injection.developer_mode",
     r"\b(?:you\s{1,8}are\s{1,8}(?:now\s{1,8})?in|act\s{1,8}as\s{1,8}if\s{1,8}you\s{1,8}(?:are|were)\s{1,8}in|simulate|pretend\s{1,8}(?:to\s{1,8}be|you\s{1,8}are)\s{1,8}in)"
     r"\s{1,8}(?:developer|dev|god|jailbreak|DAN|unrestricted)\s{1,8}mode\b"
     r"|\b(?:developer|god|jailbreak|DAN)\s{1,8}mode\s{1,8}(?:enabled|activated|is\s{1,8}now\s{1,8}(?:on|enabled|active))\b"
     r"|\b(?:enable|activate|enter)\s{1,8}(?:DAN|god|jailbreak)\s{1,8}mode\b",
     True, ("mode",)),
    ("input", "injection.role_marker",
     r"\bsystem\s{0,8}(?:prompt|message|override)\s{0,8}:"
     r"|<\|im_start\|>\s{0,8}system|<\|system\|>|<<SYS>>|\[/?INST\]|<\|start_header_id\|>\s{0,8}system"
     r"|###\s{0,8}(?:system|instruction)\s{0,8}:",
     True, ("system", "instruction", "<<sys>>", "inst]")),
    ("input", "injection.prompt_leak",
     r"\b(?:reveal|show|print|display|output|repeat|leak|dump|tell\s{1,8}me|give\s{1,8}me|what\s{1,8}(?:is|are|was|were))\s{1,8}"
     r"(?:me\s{1,8})?(?:your|the)\s{1,8}(?:(?:full|entire|complete|exact|original|hidden|secret|initial|verbatim)\s{1,8})*"
     r"(?:system\s{1,8}(?:prompt|message|instructions)|initial\s{1,8}(?:prompt|instructions)|hidden\s{1,8}(?:prompt|instructions)|pre-?prompt)"
     r"|\brepeat\s{1,8}(?:the\s{1,8}|all\s{1,8}(?:of\s{1,8})?(?:the\s{1,8})?)?(?:words|text)\s{1,8}above\b",
     True, ("system", "initial", "hidden", "prompt", "above")),
    ("output", "injection.echo_system_prompt",
     r"\bmy\s{1,8}(?:system\s{1,8}prompt|system\s{1,8}(?:message|instructions)|(?:initial|hidden|original|secret)\s{1,8}instructions)\s{1,8}"
     r"(?:is|are|was|were|says?|reads?|states?)\b"
     r"|\bhere\s{1,8}(?:is|are)\s{1,8}my\s{1,8}(?:system\s{1,8}prompt|(?:full\s{1,8}|original\s{1,8}|hidden\s{1,8}|initial\s{1,8})?instructions)\b",
     True, ("my",)),
    ("output", "injection.echo_jailbreak",
     r"\b(?:DAN|developer|jailbreak|god)\s{1,8}mode\s{1,8}(?:enabled|activated)\b",
     True, ("mode",)),
    ("output", "injection.echo_jailbreak",
     rf"\b(?:[Aa]s|I\s{{1,8}}am|I{_AP}m)\s{{1,8}}DAN\b|\[(?:🔓JAILBREAK|JAILBREAK|DAN)\]",
     False, ("DAN", "JAILBREAK")),
)  # fmt: skip
INJECTION_FIELDS: tuple[str, ...] = ("input", "output")


# Bounded hyperscan forms (supersets starting where the regex starts) for the two indicators
# with an unbounded ``(...)*`` part. prompt_leak's form is 39 characters wide, so it tracks the
# start of match (cheap on the short input) and the walk starts right at "print your ...".
_INJECTION_HS: dict[str, str] = {
    "injection.ignore_instructions":
        r"\b(?:ignor|disregard|forget|override|bypass|skip|vergiss|vergessen|oubli|olvida)",
    "injection.prompt_leak":
        r"\b(?:reveal|show|print|display|output|repeat|leak|dump|tell\s{1,8}me|give\s{1,8}me"
        r"|what\s{1,8}(?:is|are|was|were))\s{1,8}(?:me\s{1,8})?(?:your|the)\s|\brepeat\s",
}  # fmt: skip


def injection_specs(field: str) -> list[PatternSpec]:
    """Indicators in the input, or their echo in the output."""
    return [
        PatternSpec(
            "injection", code, regex, hs=_INJECTION_HS.get(code, ""), caseless=cl, literals=lits,
            label=code.split(".", 1)[1], som=code == "injection.prompt_leak",
        )
        for f, code, regex, cl, lits in _INJECTION
        if f == field
    ]


# ----------------------------------------------------------------------------- banned

_HS_UNSAFE = re.compile(r"\(\?[=!<>P(]|\\[AZzbBG0-9]|\{,|[*+?}]\+|(?<!\[)\^|(?<!\\)\$|\\[pPNuUx]")


def regex_hs_compatible(regex: str) -> bool:
    """True when a user regex may go into the hyperscan database unchanged.

    Anything whose hyperscan meaning might differ from Python's (lookarounds,
    anchors, backrefs, possessive quantifiers, ``{,n}``, unicode escapes) stays on
    the ``re`` path; that is always correct, only slower.

    >>> regex_hs_compatible(r"(?i)project\\s+falcon"), regex_hs_compatible(r"(?<!x)foo")
    (True, False)
    """
    return _HS_UNSAFE.search(regex) is None


def banned_specs(
    substrings: Sequence[str], regexes: Sequence[str], *, case_sensitive: bool
) -> list[PatternSpec]:
    """Substrings become escaped literals; regexes keep Python syntax (ASCII classes)."""
    out = []
    for i, s in enumerate(substrings):
        out.append(
            PatternSpec(
                "banned", "banned.substring", re.escape(s), caseless=not case_sensitive,
                literals=(s if case_sensitive else s.lower(),), label=f"substrings[{i}]",
            )
        )  # fmt: skip
    for i, r in enumerate(regexes):
        out.append(
            PatternSpec(
                "banned", "banned.regex", r, hs="" if regex_hs_compatible(r) else None,
                caseless=not case_sensitive, label=f"regexes[{i}]",
            )
        )  # fmt: skip
    return out

"""Pattern tables of the built-in pattern guards (PII, secrets, refusals, injection, banned).

Each entry has a precise Python ``re`` form plus a hyperscan form that matches a
superset starting no later (see ``engine``). Validators keep precision: checksums,
registry lengths, and context rules run only on candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

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


def _email(text: str, m: Match) -> Span | None:
    tld = m.group(0).rsplit(".", 1)[-1].lower()
    return None if tld in _FILE_EXT_TLDS else m.span()


_PHONE_WORDS = (
    r"phone|tel\b|tel\.|telephone|call|mobile|cell|fax|whatsapp|sms|dial|reach\s+(?:me|us)|line\b|"
    r"telefon|handy|mobil|anrufen|ruf\b|rufnummer|t[ée]l[ée]phone|t[ée]l\.|portable|appel|joindre|"
    r"tel[ée]fono|m[óo]vil|celular|ll[aá]m"
)
_PHONE_CONTEXT = re.compile(f"(?:{_PHONE_WORDS})", re.IGNORECASE | re.ASCII)
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


def _ipv4(text: str, m: Match) -> Span | None:
    if not v.ipv4_ok(m.group(0)):
        return None
    if _VERSION_NEAR.search(text, max(0, m.start() - 24), m.start()):  # "version 1.2.3.4"
        return None
    return m.span()


def _ipv6(text: str, m: Match) -> Span | None:
    return m.span() if v.ipv6_ok(m.group(0)) else None


_KEEP_DIGITS = str.maketrans("", "", "".join(chr(c) for c in range(128) if not chr(c).isdigit()))
_GAP = r"[ .\-/()]{0,6}"
# One alternative per acceptance rule of _phone (structural shapes); the context rule
# is covered by the ``near`` anchor on the phone words.
_PHONE_HS = (
    rf"\+[(]?\d(?:{_GAP}\d){{7}}", rf"00[1-9](?:{_GAP}\d){{7}}", rf"\(\d(?:{_GAP}\d){{8}}",
    r"\(?[2-9]\d{2}\)?[ .-]?\d{3}[.-]\d{4}", rf"0(?:{_GAP}\d){{8}}",
)
_PHONE_NEAR = _PHONE_WORDS.replace("\\b", "")
_PHONE_RE = (
    r"(?<![\w+/.-])(?:\+|00)?(?:\d{1,12}|\(\d{1,5}\))(?:[ .\-/]?\(0\)[ .\-/]?)?"
    r"(?:[ .\-/]{1,2}\d{1,12}|[ .\-/]{0,2}\(\d{1,5}\)|(?<=\))\d{1,12}){0,6}"
    r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w/]|[.-]\d)"
)

_ALNUM_STAR = str.maketrans(dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "*"))

# kind -> specs; priority: a lower-priority span overlapping a higher one is dropped
_PII: dict[str, tuple[PatternSpec, ...]] = {
    "email": (
        PatternSpec(
            "pii", "pii.email",
            r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
            r"[A-Za-z]{2,24}(?![\w-])",
            hs=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9]", literals=("@",), validate=_email, redact=redact_email,
            priority=50,
        ),
    ),
    "iban": (
        PatternSpec(
            "pii", "pii.iban",
            r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)",
            hs=r"[A-Z]{2}\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}", validate=_iban,
            redact=lambda s: s[:2] + mask_digits(s[2:]).translate(_ALNUM_STAR), priority=40,
        ),
    ),
    "card": (
        PatternSpec(
            "pii", "pii.card", r"(?<![\w-])(?:\d[ -]?){11,18}\d(?![\w-]|[.,]\d)",
            hs=r"[1-6](?:[ -]?\d){11,18}",  # accepted cards start with 1-6 (see card_ok) validate=_card, redact=lambda s: mask_digits(s, 4), priority=30,
            start=r"(?<![\w-])\d",
        ),
    ),
    "ssn": (
        PatternSpec(
            "pii", "pii.ssn", r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])", hs=r"\d{3}-\d{2}-\d{4}",
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
            "pii", "pii.ipv4", r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)", hs=r"(?:\d{1,3}\.){3}\d{1,3}",
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
            hs=r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY", literals=("PRIVATE KEY",), redact=_pem_excerpt,
            priority=20,
        ),
    ),
    "jwt": (
        PatternSpec(
            "secrets", "secrets.jwt",
            rf"{_NB}eyJ[A-Za-z0-9_-]{{4,}}\.[A-Za-z0-9_-]{{4,}}\.[A-Za-z0-9_-]*{_NA}",
            hs=r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.", literals=("eyJ",), validate=_jwt,
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
_IM = rf"I(?:{_AP}m|\s+am)"
_CANT = rf"(?:can{_AP}?t|cannot|can\s+not|won{_AP}?t|will\s+not)"
_VERBS = (
    r"(?:help|assist|provide|do|comply|fulfil|fulfill|answer|share|create|generate|write|support|engage|"
    r"discuss|give|continue|complete)"
)

# (language, code) -> (label, regex, literals for the re prefilter)
_REFUSAL: dict[tuple[str, str], tuple[str, ...]] = {
    ("en", "refusal.phrase"): (
        rf"\b{_IM}\s+(?:so\s+|very\s+|truly\s+|really\s+)?sorry,?\s+(?:but\s+)?(?:I\s+{_CANT}|{_IM}\s+(?:unable|not\s+able))"
        rf"|\b(?:sorry|unfortunately),?\s+(?:but\s+)?(?:I\s+{_CANT}|{_IM}\s+(?:unable|not\s+able)\s+to)\s+{_VERBS}"
        rf"|\bI\s+{_CANT}\s+(?:help|assist)\s+(?:you\s+)?with\s+(?:that|this|your\s+request|the\s+request|requests)"
        rf"|\b{_IM}\s+(?:unable|not\s+able)\s+to\s+(?:help|assist|comply|fulfil|fulfill|provide|answer)"
        rf"|\bI\s+{_CANT}\s+(?:comply|fulfil|fulfill)"
        rf"|\bI\s+must\s+(?:respectfully\s+)?decline"
        rf"|\bAs\s+an\s+AI(?:\s+language)?\s+model"
        rf"|\bAs\s+an\s+AI(?:\s+assistant)?,?\s+I\s+(?:{_CANT}|don{_AP}?t|do\s+not|have\s+no)",
        "sorry", "unfortunately", "can", "won", "will", "able", "decline", "ai",
    ),
    ("en", "refusal.non_answer"): (
        rf"\bI\s+(?:don{_AP}?t|do\s+not)\s+know\b"
        rf"|\bI\s+(?:don{_AP}?t|do\s+not)\s+have\s+(?:enough\s+|sufficient\s+|any\s+)?(?:information|data|details|context)"
        rf"\s+(?:about|on|to|regarding)"
        rf"|\bI\s+(?:don{_AP}?t|do\s+not)\s+have\s+access\s+to\s+(?:real-time|that|this|your|the\s+internet)"
        rf"|\bI\s+have\s+no\s+(?:information|knowledge|data)\s+(?:about|on|regarding)",
        "know", "have",
    ),
    ("de", "refusal.phrase"): (
        r"\bEs\s+tut\s+mir\s+(?:sehr\s+)?leid,?\s+(?:aber\s+)?(?:ich\s+kann|das\s+kann\s+ich|ich\s+bin\s+nicht\s+in\s+der\s+Lage|ich\s+darf)"
        r"|\bLeider\s+(?:kann|darf)\s+ich\s+(?:Ihnen\s+|dir\s+|euch\s+)?(?:dabei\s+|damit\s+|hierbei\s+|bei\s+(?:dieser|Ihrer|deiner)\s+Anfrage\s+)?"
        r"(?:nicht|keine)\s+(?:helfen|weiterhelfen|behilflich|unterstützen|Auskunft)"
        r"|\bIch\s+kann\s+(?:Ihnen\s+|dir\s+)?(?:dabei\s+|damit\s+|hierbei\s+|bei\s+(?:dieser|Ihrer|deiner)\s+Anfrage\s+)?nicht\s+"
        r"(?:helfen|weiterhelfen|behilflich\s+sein|unterstützen)"
        r"|\bIch\s+bin\s+(?:leider\s+)?nicht\s+in\s+der\s+Lage"
        r"|\bAls\s+(?:ein\s+)?KI(?:-Sprachmodell|-Modell|-Assistent|\s+Sprachmodell)"
        r"|\bIch\s+muss\s+(?:das\s+|diese\s+Anfrage\s+)?(?:leider\s+)?ablehnen",
        "leid", "leider", "kann", "lage", "ki", "ablehnen",
    ),
    ("de", "refusal.non_answer"): (
        r"\bIch\s+wei(?:ß|ss)\s+(?:es\s+|das\s+)?(?:leider\s+)?nicht\b"
        r"|\bIch\s+habe\s+(?:leider\s+)?keine\s+(?:Informationen|Kenntnis|Daten)\s+(?:über|zu|darüber)"
        r"|\bDazu\s+(?:habe\s+ich|liegen\s+mir)\s+(?:leider\s+)?keine\s+Informationen",
        "wei", "keine",
    ),
    ("fr", "refusal.phrase"): (
        rf"\b(?:Je\s+suis\s+)?(?:vraiment\s+)?d[ée]sol[ée]e?,?\s+(?:mais\s+)?je\s+ne\s+(?:peux|suis\s+pas\s+en\s+mesure)"
        rf"|\bJe\s+ne\s+peux\s+pas\b"
        rf"|\bJe\s+ne\s+suis\s+pas\s+en\s+mesure\s+de"
        rf"|\bEn\s+tant\s+qu(?:e\s+mod[èe]le\s+de\s+langage|e\s+(?:simple\s+)?assistant|{_AP}\s*(?:IA|intelligence\s+artificielle))"
        rf"|\bJe\s+dois\s+(?:malheureusement\s+)?refuser"
        rf"|\bIl\s+m{_AP}est\s+impossible\s+de",
        "sol", "peux", "mesure", "tant", "refuser", "impossible",
    ),
    ("fr", "refusal.non_answer"): (
        rf"\bJe\s+ne\s+sais\s+pas\b"
        rf"|\bJe\s+n{_AP}ai\s+pas\s+(?:assez\s+d{_AP}|suffisamment\s+d{_AP}|d{_AP}|accès\s+(?:à\s+|aux\s+))informations?",
        "sais", "information",
    ),
    ("es", "refusal.phrase"): (
        r"\bLo\s+siento(?:\s+mucho)?,?\s+(?:pero\s+)?no\s+(?:puedo|me\s+es\s+posible|estoy\s+en\s+condiciones)"
        r"|\bNo\s+puedo\s+(?:ayudar(?:te|le|les)?|asistir(?:te|le)?|proporcionar|cumplir|hacer\s+eso|responder)"
        r"|\bComo\s+(?:un\s+)?modelo\s+de\s+lenguaje"
        r"|\bComo\s+(?:una\s+)?(?:IA|inteligencia\s+artificial),?\s+no\s+(?:puedo|tengo)"
        r"|\bNo\s+estoy\s+en\s+condiciones\s+de"
        r"|\bDebo\s+(?:rechazar|declinar)"
        r"|\bLamentablemente,?\s+no\s+puedo",
        "siento", "puedo", "como", "condiciones", "debo",
    ),
    ("es", "refusal.non_answer"): (
        r"\bNo\s+(?:lo\s+)?sé(?![\w])"
        r"|\bNo\s+tengo\s+(?:suficiente\s+)?(?:información|datos|acceso)",
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
     r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:(?:all|any|the|your|my|of|these|those|every)\s+)*"
     r"(?:previous|prior|above|earlier|preceding|former|initial|original|system|developer|safety)\s+"
     r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|guardrails|messages?|context|commands?|constraints)"
     r"|\b(?:ignoriere|ignorier|ignorieren\s+Sie|vergiss|vergessen\s+Sie)\s+(?:(?:alle|die|deine|Ihre)\s+)*"
     r"(?:vorherigen|bisherigen|obigen|vorangegangenen|früheren)\s+(?:Anweisungen|Instruktionen|Befehle|Regeln)"
     r"|\b(?:ignore[rz]?|oublie[rz]?)\s+(?:toutes\s+)?(?:les\s+|tes\s+|vos\s+)?(?:instructions|consignes|règles)\s+"
     r"(?:précédentes|ci-dessus|antérieures)"
     r"|\b(?:ignora|ignore|ignorar|olvida)\s+(?:todas\s+)?(?:las\s+|tus\s+)?(?:instrucciones|indicaciones|reglas)\s+"
     r"(?:anteriores|previas)",
     True, ("ignor", "disregard", "forget", "override", "bypass", "skip", "vergiss", "vergessen", "oubli",
            "olvida")),
    ("input", "injection.jailbreak_persona",
     r"\b(?:you\s+are\s+now|act\s+as|pretend\s+to\s+be|from\s+now\s+on\s+you\s+are)\s+(?:an?\s+)?"
     r"(?:jailbroken|unfiltered|uncensored|unrestricted)\b"
     r"|\bdo\s+anything\s+now\b"
     r"|\b(?:without|no)\s+(?:any\s+)?(?:ethical|moral)\s+(?:guidelines|restrictions|filters|limitations|boundaries)",
     True, ("now", "act", "pretend", "anything", "ethical", "moral")),
    ("input", "injection.jailbreak_persona",
     r"\b(?i:you\s+are\s+now|act\s+as|pretend\s+to\s+be|from\s+now\s+on\s+you\s+are)\s+(?:an?\s+)?(?:DAN|STAN|DUDE)\b",
     False, ("DAN", "STAN", "DUDE")),
    ("input", "injection.developer_mode",
     r"\b(?:you\s+are\s+(?:now\s+)?in|act\s+as\s+if\s+you\s+(?:are|were)\s+in|simulate|pretend\s+(?:to\s+be|you\s+are)\s+in)"
     r"\s+(?:developer|dev|god|jailbreak|DAN|unrestricted)\s+mode\b"
     r"|\b(?:developer|god|jailbreak|DAN)\s+mode\s+(?:enabled|activated|is\s+now\s+(?:on|enabled|active))\b"
     r"|\b(?:enable|activate|enter)\s+(?:DAN|god|jailbreak)\s+mode\b",
     True, ("mode",)),
    ("input", "injection.role_marker",
     r"\bsystem\s*(?:prompt|message|override)\s*:"
     r"|<\|im_start\|>\s*system|<\|system\|>|<<SYS>>|\[/?INST\]|<\|start_header_id\|>\s*system"
     r"|###\s*(?:system|instruction)\s*:",
     True, ("system", "instruction", "<<sys>>", "inst]")),
    ("input", "injection.prompt_leak",
     r"\b(?:reveal|show|print|display|output|repeat|leak|dump|tell\s+me|give\s+me|what\s+(?:is|are|was|were))\s+"
     r"(?:me\s+)?(?:your|the)\s+(?:(?:full|entire|complete|exact|original|hidden|secret|initial|verbatim)\s+)*"
     r"(?:system\s+(?:prompt|message|instructions)|initial\s+(?:prompt|instructions)|hidden\s+(?:prompt|instructions)|pre-?prompt)"
     r"|\brepeat\s+(?:the\s+|all\s+(?:of\s+)?(?:the\s+)?)?(?:words|text)\s+above\b",
     True, ("system", "initial", "hidden", "prompt", "above")),
    ("output", "injection.echo_system_prompt",
     r"\bmy\s+(?:system\s+prompt|system\s+(?:message|instructions)|(?:initial|hidden|original|secret)\s+instructions)\s+"
     r"(?:is|are|was|were|says?|reads?|states?)\b"
     r"|\bhere\s+(?:is|are)\s+my\s+(?:system\s+prompt|(?:full\s+|original\s+|hidden\s+|initial\s+)?instructions)\b",
     True, ("my",)),
    ("output", "injection.echo_jailbreak",
     r"\b(?:DAN|developer|jailbreak|god)\s+mode\s+(?:enabled|activated)\b",
     True, ("mode",)),
    ("output", "injection.echo_jailbreak",
     rf"\b(?:[Aa]s|I\s+am|I{_AP}m)\s+DAN\b|\[(?:🔓JAILBREAK|JAILBREAK|DAN)\]",
     False, ("DAN", "JAILBREAK")),
)  # fmt: skip
INJECTION_FIELDS: tuple[str, ...] = ("input", "output")


def injection_specs(field: str) -> list[PatternSpec]:
    """Indicators in the input, or their echo in the output."""
    return [
        PatternSpec("injection", code, regex, caseless=cl, literals=lits, label=code.split(".", 1)[1])
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

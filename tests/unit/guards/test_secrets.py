from __future__ import annotations

import base64
import json

import pytest
from guardtest_helpers import found, spans_text

from rollguard.guards import GuardSet, Severity


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


JWT = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': '42'})}.c2lnbmF0dXJlX2J5dGVz"
NOT_JWT = f"{_b64({'foo': 'bar'})}.{_b64({'sub': '42'})}.c2lnbmF0dXJl"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1x\n-----END RSA PRIVATE KEY-----"

POSITIVE = [
    ("secrets.aws_access_key", "key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    ("secrets.aws_access_key", "temp ASIAY34FZKBOKMUTVV7A.", "ASIAY34FZKBOKMUTVV7A"),
    (
        "secrets.aws_secret_key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "secrets.aws_secret_key",
        '{"SecretAccessKey": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"}',
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    ),
    (
        "secrets.github_token",
        "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    ),
    (
        "secrets.github_token",
        "gho_16C7e42F292c6912E7710c838347Ae178B4a ok",
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    ("secrets.github_token", "ghs_" + "a1B2" * 9, "ghs_" + "a1B2" * 9),
    (
        "secrets.github_token",
        "github_pat_" + "A1b2C3d4E5f6G7h8I9j0K1" + "_" + "x9Y8" * 14 + "zZ1",
        "github_pat_" + "A1b2C3d4E5f6G7h8I9j0K1" + "_" + "x9Y8" * 14 + "zZ1",
    ),
    (
        "secrets.slack_token",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "secrets.slack_webhook",
        "POST https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX now",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    ("secrets.openai_key", "OPENAI_API_KEY=sk-abcDEF1234567890ghiJKL9876", "sk-abcDEF1234567890ghiJKL9876"),
    (
        "secrets.openai_key",
        "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56_x-Yz",
        "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56_x-Yz",
    ),
    (
        "secrets.google_api_key",
        "key=AIzaSyA1234567890abcdefghijklmnopqrstuv&x",
        "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    ),
    ("secrets.private_key", "here:\n" + PEM + "\nend", PEM),
    ("secrets.jwt", f"Bearer {JWT}", JWT),
]


@pytest.mark.parametrize(("code", "text", "want"), POSITIVE)
def test_secret_positive(gs: GuardSet, code: str, text: str, want: str) -> None:
    f = found(gs, text)
    assert code in f, f
    assert spans_text(text, f[code]) == [want]
    assert f[code].severity is Severity.CRITICAL
    assert want not in f[code].excerpt and len(f[code].excerpt) < len(want)


NEGATIVE = [
    "sha256 00392a4d8925f7ad4d144a20024d31e46f0f0f7b73a60b1d7ce88e0cc2bbbcd3 matches.",
    "Use scikit-learn (sk-learn) and the sk-long-feature-flag-name-for-tests flag.",
    "AKIAIOSFODNN7EXAMPL is too short and AKIAIOSFODNN7EXAMPLEX too long.",
    "ghp_short and gh_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 are not tokens.",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
    f"Looks like a JWT but is not: {NOT_JWT}",
    "xoxb-12 is truncated; AIzaSyA123 is too short.",
    "aws_secret_access_key = <your secret here> (see the docs)",
    "UUID 5653a45c-4939-4aa5-9cf5-192bbf67da14 and version v1.2.3.",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_secret_near_misses(gs: GuardSet, text: str) -> None:
    f = found(gs, text)
    assert not [c for c in f if c.startswith("secrets.")], f


def test_secrets_in_input_need_opt_in(engine: str) -> None:
    from rollguard.guards import GuardItem, build_guard_set

    text = "my key is AKIAIOSFODNN7EXAMPLE"
    default = build_guard_set(engine=engine)
    assert not [f for f in default.check(GuardItem(output="ok.", input=text)) if f.guard == "secrets"]
    both = build_guard_set({"secrets": {"fields": ["input", "output"]}}, engine=engine)
    hits = [f for f in both.check(GuardItem(output="ok.", input=text)) if f.guard == "secrets"]
    assert [(f.field, f.code) for f in hits] == [("input", "secrets.aws_access_key")]

"""Command signatures: Ed25519 with key ids, so flag services can verify but never forge.

Why Ed25519 rather than HMAC-SHA256: with HMAC every subscriber holds the secret that mints commands, so
one compromised flag service could roll back (or promote!) anything. With Ed25519 the worker alone holds
the private key; subscribers get public keys. Key ids make rotation routine: publish the new public key to
subscribers, then switch the worker's signing key; old commands still verify under the old key id.

Keys come from the environment or files, never from code:

- worker: ``ROLLGUARD_SIGNING_KEY`` (base64 raw 32-byte private key) or ``ROLLGUARD_SIGNING_KEY_FILE``,
  and ``ROLLGUARD_SIGNING_KEY_ID``;
- subscribers: ``ROLLGUARD_VERIFY_KEYS`` = ``k1:<base64 public>,k2:<base64 public>`` or
  ``ROLLGUARD_VERIFY_KEYS_FILE`` (one ``key_id:base64`` per line).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from rollguard.contracts import Command


class SigningError(RuntimeError):
    """Missing or malformed key material."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningError(f"{what}: not base64") from None
    if len(raw) != 32:
        raise SigningError(f"{what}: expected 32 raw bytes, got {len(raw)}")
    return raw


def generate_keypair() -> tuple[str, str]:
    """A fresh (private, public) pair, base64 raw; for ``rollguard keys generate`` and test fixtures."""
    priv = Ed25519PrivateKey.generate()
    raw_priv = priv.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw_pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _b64(raw_priv), _b64(raw_pub)


@dataclass(frozen=True)
class Signer:
    """Signs commands with one private key under a key id."""

    key_id: str
    private_key: Ed25519PrivateKey

    @classmethod
    def from_base64(cls, key_id: str, private_b64: str) -> Signer:
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(_unb64(private_b64, "signing key")))

    @classmethod
    def from_env(cls) -> Signer:
        key_id = os.environ.get("ROLLGUARD_SIGNING_KEY_ID", "k1")
        text = os.environ.get("ROLLGUARD_SIGNING_KEY")
        path = os.environ.get("ROLLGUARD_SIGNING_KEY_FILE")
        if not text and path:
            text = Path(path).read_text()
        if not text:
            raise SigningError(
                "no signing key: set ROLLGUARD_SIGNING_KEY or ROLLGUARD_SIGNING_KEY_FILE "
                "(create one with `rollguard keys generate`)")
        return cls.from_base64(key_id, text)

    @property
    def public_b64(self) -> str:
        return _b64(self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, command: Command) -> Command:
        unsigned = command.model_copy(update={"key_id": self.key_id, "signature": None})
        sig = self.private_key.sign(unsigned.signing_payload())
        return unsigned.model_copy(update={"signature": _b64(sig)})


class Verifier:
    """Holds the public keys subscribers accept, by key id (several at once during rotation)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {
            kid: Ed25519PublicKey.from_public_bytes(_unb64(pub, f"verify key {kid}")) for kid, pub in keys.items()
        }

    @classmethod
    def parse(cls, text: str) -> Verifier:
        keys: dict[str, str] = {}
        for item in text.replace("\n", ",").split(","):
            item = item.strip()
            if not item or item.startswith("#"):
                continue
            kid, sep, pub = item.partition(":")
            if not sep:
                raise SigningError(f"verify key entry {item[:20]!r}: expected key_id:base64")
            keys[kid.strip()] = pub.strip()
        if not keys:
            raise SigningError("no verify keys given")
        return cls(keys)

    @classmethod
    def from_env(cls) -> Verifier:
        text = os.environ.get("ROLLGUARD_VERIFY_KEYS")
        path = os.environ.get("ROLLGUARD_VERIFY_KEYS_FILE")
        if not text and path:
            text = Path(path).read_text()
        if not text:
            raise SigningError("no verify keys: set ROLLGUARD_VERIFY_KEYS or ROLLGUARD_VERIFY_KEYS_FILE")
        return cls.parse(text)

    def verify(self, command: Command) -> str | None:
        """None when the signature is valid; otherwise why not (``unsigned``, ``unknown key``, ``forged``)."""
        if not command.signature or not command.key_id:
            return "unsigned"
        key = self._keys.get(command.key_id)
        if key is None:
            return f"unknown key id {command.key_id!r}"
        try:
            sig = base64.b64decode(command.signature, validate=True)
            key.verify(sig, command.signing_payload())
        except (InvalidSignature, binascii.Error, ValueError):
            return "bad signature (forged or altered)"
        return None

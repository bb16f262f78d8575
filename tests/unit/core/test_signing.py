from __future__ import annotations

import pytest

from rollguard.client.subscriber import ControlState
from rollguard.contracts import Command
from rollguard.signing import Signer, SigningError, Verifier, generate_keypair


def cmd(seq: int, cid: str | None = None, scope: dict[str, str] | None = None) -> Command:
    return Command(command_id=cid or f"c{seq}", seq=seq, flag="flag", feature="f", action="rollback",
                   variant="canary", scope=scope or {}, weight=0.0, reason="test")


@pytest.fixture
def pair() -> tuple[Signer, Verifier]:
    priv, pub = generate_keypair()
    return Signer.from_base64("k1", priv), Verifier({"k1": pub})


def test_sign_and_verify(pair: tuple[Signer, Verifier]) -> None:
    signer, verifier = pair
    signed = signer.sign(cmd(1))
    assert verifier.verify(signed) is None
    assert verifier.verify(cmd(1)) == "unsigned"
    tampered = signed.model_copy(update={"scope": {"tier": "free"}})
    assert "forged" in (verifier.verify(tampered) or "")


def test_rotation_accepts_old_and_new_keys(pair: tuple[Signer, Verifier]) -> None:
    old, _ = pair
    priv2, pub2 = generate_keypair()
    new = Signer.from_base64("k2", priv2)
    both = Verifier.parse(f"k1:{old.public_b64}, k2:{pub2}")
    assert both.verify(old.sign(cmd(1))) is None and both.verify(new.sign(cmd(2))) is None
    assert "unknown key" in (Verifier({"k2": pub2}).verify(old.sign(cmd(1))) or "")


def test_keys_from_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLGUARD_SIGNING_KEY", raising=False)
    monkeypatch.delenv("ROLLGUARD_SIGNING_KEY_FILE", raising=False)
    with pytest.raises(SigningError, match="no signing key"):
        Signer.from_env()
    with pytest.raises(SigningError, match="base64"):
        Signer.from_base64("k", "not base64!!")


def test_control_state_rejects_unsigned_forged_stale_replayed(pair: tuple[Signer, Verifier]) -> None:
    signer, verifier = pair
    st = ControlState(verifier)
    first = signer.sign(cmd(1, scope={"tier": "premium"}))
    assert st.offer(first.to_bytes(), key=first.control_key) == first
    assert st.offer(cmd(2).to_bytes()) is None  # unsigned
    forged = signer.sign(cmd(3)).model_copy(update={"action": "promote"})
    assert st.offer(forged.to_bytes()) is None
    assert st.offer(first.to_bytes(), key=first.control_key) is None  # replayed id
    stale = signer.sign(cmd(1, cid="other"))
    assert st.offer(stale.to_bytes()) is None
    assert st.offer(b"garbage") is None
    wrong_key = signer.sign(cmd(5, scope={"tier": "free"}))
    assert st.offer(wrong_key.to_bytes(), key="flag") is None  # key must match the scope it claims
    newer = signer.sign(cmd(6))
    assert st.offer(newer.to_bytes(), key=newer.control_key) == newer
    reasons = [r.reason for r in st.rejections]
    assert reasons[0] == "unsigned" and "forged" in reasons[1] and reasons[2] == "replayed command_id"
    assert reasons[3].startswith("stale seq") and reasons[4].startswith("malformed")
    assert st.accepted == 2 and set(st.latest) == {"flag/tier=premium", "flag"}

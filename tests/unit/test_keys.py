"""The keyring: a dev key made once, signatures that verify, rotation that keeps history
verifiable and refuses a retired key's signatures made after its retirement, and private keys
that never show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from config.settings import Settings
from infra import keys
from ml import signing


def test_a_dev_key_is_made_once_and_signs(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path)
    kid = keys.ensure_dev_key(s)
    assert keys.ensure_dev_key(s) == kid  # idempotent
    ring = keys.load(s)
    used, sig = ring.sign(b"hash")
    assert used == kid and ring.verify(kid, b"hash", sig)
    assert not ring.verify(kid, b"other", sig)
    assert not ring.verify("0" * 16, b"hash", sig)
    assert (s.keys_dir / "active.pem").stat().st_mode & 0o777 == 0o600


def test_rotation_keeps_history_verifiable_and_refuses_late_signatures(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path)
    old_id = keys.ensure_dev_key(s)
    old_ring = keys.load(s)
    _, old_sig = old_ring.sign(b"e1")
    before = datetime.now(UTC) - timedelta(seconds=1)
    retired_id, new_id = keys.rotate(s)
    assert retired_id == old_id != new_id
    ring = keys.load(s)
    assert ring.key_id == new_id
    assert ring.verify(old_id, b"e1", old_sig, when=before)  # history still verifies
    _, late = old_ring.sign(b"e2")  # someone still holding the retired key
    assert not ring.verify(old_id, b"e2", late, when=datetime.now(UTC) + timedelta(seconds=1))
    published = {k["key_id"]: k for k in ring.published()}
    assert published[old_id]["retired_at"] and published[new_id]["retired_at"] is None


def test_a_configured_key_is_used_and_never_shown(tmp_path: Path) -> None:
    key = signing.generate_private_key()
    pem = signing.private_key_to_pem(key).decode()
    s = Settings(var_dir=tmp_path, signing_private_key=SecretStr(pem))
    ring = keys.load(s)
    assert ring.key_id == signing.key_id(key.public_key())
    assert "PRIVATE" not in repr(ring) and "PRIVATE" not in str(ring.published())
    assert "PRIVATE" not in repr(s)

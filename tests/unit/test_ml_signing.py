"""ml.signing: Ed25519 over the artifact message, and the outside verifier in examples/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ml import signing
from ml.util import sha256_file

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = {"classes": ["a", "b"], "name": "é", "hyperparameters": {"learning_rate": 0.001}}
SHA = "ab" * 32


def test_sign_and_verify_round_trip() -> None:
    key = signing.generate_private_key()
    message = signing.artifact_message(SHA, MANIFEST)
    assert message == (
        b"veritas-artifact-v1\n" + SHA.encode() + b"\n"
        + '{"classes":["a","b"],"hyperparameters":{"learning_rate":0.001},"name":"é"}'.encode()
    )  # fmt: skip
    signature = signing.sign(key, message)
    assert signing.verify(key.public_key(), message, signature)


def test_a_tampered_byte_another_key_or_a_bad_signature_fail() -> None:
    key = signing.generate_private_key()
    message = signing.artifact_message(SHA, MANIFEST)
    signature = signing.sign(key, message)
    for i in (0, len(message) // 2, len(message) - 1):
        tampered = bytearray(message)
        tampered[i] ^= 1
        assert not signing.verify(key.public_key(), bytes(tampered), signature)
    assert not signing.verify(signing.generate_private_key().public_key(), message, signature)
    assert not signing.verify(key.public_key(), message, "not base64!")
    assert not signing.verify(key.public_key(), message, signature[:-4])
    other = dict(MANIFEST, classes=["b", "a"])
    assert not signing.verify(key.public_key(), signing.artifact_message(SHA, other), signature)
    with pytest.raises(ValueError):
        signing.artifact_message("AB" * 32, MANIFEST)


def test_pem_round_trips_and_key_ids() -> None:
    key = signing.generate_private_key()
    again = signing.private_key_from_pem(signing.private_key_to_pem(key, b"pw"), b"pw")
    public = signing.public_key_from_pem(signing.public_key_to_pem(key.public_key()))
    assert (
        signing.key_id(public)
        == signing.key_id(again.public_key())
        == signing.key_id(key.public_key())
    )
    assert len(signing.key_id(public)) == 16
    assert signing.key_id(public) != signing.key_id(signing.generate_private_key().public_key())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    ec_pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="not an Ed25519"):
        signing.public_key_from_pem(ec_pem)


def _verifier(*args: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "examples" / "verify_artifact.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def test_the_outside_verifier_script_agrees(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"tensor bytes")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST, indent=2, ensure_ascii=False), encoding="utf-8")
    key = signing.generate_private_key()
    (tmp_path / "key.pem").write_bytes(signing.public_key_to_pem(key.public_key()))
    signature = signing.sign(key, signing.artifact_message(sha256_file(model), MANIFEST))
    ok = _verifier(str(model), str(manifest), signature, str(tmp_path / "key.pem"))
    assert ok.returncode == 0 and ok.stdout.split() == ["OK", signing.key_id(key.public_key())]
    model.write_bytes(b"tensor bytez")
    bad = _verifier(str(model), str(manifest), signature, str(tmp_path / "key.pem"))
    assert bad.returncode == 1 and bad.stdout.strip() == "BAD"

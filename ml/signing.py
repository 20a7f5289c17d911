"""Ed25519 signatures over an artifact's digest and manifest (no torch; ``cryptography``).

The signed message is, byte for byte::

    b"veritas-artifact-v1\\n" + sha256_hex.encode("ascii") + b"\\n" + canonical_json(manifest)

where ``sha256_hex`` is the artifact file's lowercase hex sha256 and ``canonical_json`` is JSON
with sorted keys, separators ``(",", ":")``, UTF-8 and no ASCII escaping (no NaN or infinity).
Signatures are standard base64 of the 64 raw signature bytes. A key's id is the first 16 hex
characters of the sha256 of its 32 raw public-key bytes. ``examples/verify_artifact.py`` checks
all of this with ``cryptography``, hashlib and json alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ml.util import canonical_json

MESSAGE_PREFIX = b"veritas-artifact-v1\n"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def artifact_message(sha256: str, manifest: dict[str, Any]) -> bytes:
    """The exact bytes signed for an artifact (see the module docstring)."""
    if not _SHA256.match(sha256):
        raise ValueError(f"not a lowercase hex sha256: {sha256!r}")
    return MESSAGE_PREFIX + sha256.encode("ascii") + b"\n" + canonical_json(manifest)


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    """The base64 Ed25519 signature of ``message``."""
    return base64.b64encode(private_key.sign(message)).decode("ascii")


def verify(public_key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is ``public_key``'s signature of ``message``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex characters of sha256(raw 32-byte public key)."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()[:16]


def private_key_to_pem(private_key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``password`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_key_from_pem(data: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; ``ValueError`` for any other key type."""
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"not an Ed25519 private key: {type(key).__name__}")
    return key


def public_key_to_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ``ValueError`` for any other key type."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key: {type(key).__name__}")
    return key

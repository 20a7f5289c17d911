"""The one keyring: Ed25519 keys that sign artifacts (the training saga) and events (the log).

Keys live in `settings.keys_dir` (var/keys by default): `active.pem` is the private key that
signs, and `public/<key_id>.json` records every public key ever used, with when it was made and,
once rotated out, when it was retired. Rotation makes a new active key and retires the old one:
its public key stays, so history signed with it still verifies, but a signature by a retired key
dated after its retirement is refused. `veritas init` makes a dev key when none is configured;
`settings.signing_private_key` (PEM) configures one instead. Private keys never leave this
module: nothing logs, publishes or returns them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.settings import Settings
from ml import signing

ACTIVE_FILE = "active.pem"


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    key: Ed25519PublicKey
    created_at: str
    retired_at: str | None

    def valid_at(self, when: datetime | None) -> bool:
        """A retired key's signatures are trusted only from before its retirement."""
        if self.retired_at is None or when is None:
            return True
        return when < datetime.fromisoformat(self.retired_at)

    def published(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "algorithm": "Ed25519",
            "public_key_pem": signing.public_key_to_pem(self.key).decode(),
            "created_at": self.created_at,
            "retired_at": self.retired_at,
        }


class Keyring:
    def __init__(self, active: Ed25519PrivateKey, public: dict[str, PublicKey]) -> None:
        self._active = active
        self.key_id = signing.key_id(active.public_key())
        self.public = public

    def sign(self, message: bytes) -> tuple[str, str]:
        """(key_id, base64 signature) of `message` by the active key."""
        return self.key_id, signing.sign(self._active, message)

    def verify(
        self, key_id: str, message: bytes, signature: str, when: datetime | None = None
    ) -> bool:
        """Whether the key named `key_id` signed `message`, and was trusted at `when`."""
        key = self.public.get(key_id)
        return (
            key is not None and key.valid_at(when) and signing.verify(key.key, message, signature)
        )

    def published(self) -> list[dict[str, Any]]:
        return [k.published() for k in sorted(self.public.values(), key=lambda k: k.created_at)]

    def __repr__(self) -> str:  # never the private key
        return f"Keyring(active={self.key_id}, keys={sorted(self.public)})"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _record(directory: Path, key: Ed25519PublicKey, retired_at: str | None = None) -> PublicKey:
    kid = signing.key_id(key)
    path = directory / "public" / f"{kid}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    entry = PublicKey(
        kid, key, old.get("created_at") or _now(), retired_at or old.get("retired_at")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {k: v for k, v in entry.published().items() if k != "algorithm"}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    tmp.replace(path)
    return entry


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_key_to_pem(key))
    tmp.replace(path)


def ensure_dev_key(settings: Settings) -> str:
    """Make a local key when none is configured or kept; returns the active key id."""
    if settings.signing_private_key is not None:
        return load(settings).key_id
    path = settings.keys_dir / ACTIVE_FILE
    if not path.exists():
        key = signing.generate_private_key()
        _write_private(path, key)
        _record(settings.keys_dir, key.public_key())
    return load(settings).key_id


def rotate(settings: Settings) -> tuple[str, str]:
    """A new active key; the old one is retired now (its public key is kept). (old, new) ids."""
    if settings.signing_private_key is not None:
        raise ValueError("the signing key is configured (signing_private_key): rotate it there")
    old = load(settings)
    key = signing.generate_private_key()
    # The new key is published before it signs, and the old one retired only once the new one is
    # active: a writer that reloads between the steps never signs with a key already retired.
    _record(settings.keys_dir, key.public_key())
    _write_private(settings.keys_dir / ACTIVE_FILE, key)
    _record(settings.keys_dir, old._active.public_key(), retired_at=_now())
    return old.key_id, signing.key_id(key.public_key())


def load(settings: Settings) -> Keyring:
    if settings.signing_private_key is not None:
        active = signing.private_key_from_pem(
            settings.signing_private_key.get_secret_value().encode()
        )
    else:
        active = signing.private_key_from_pem((settings.keys_dir / ACTIVE_FILE).read_bytes())
    public = {k.key_id: k for k in _published(settings.keys_dir)}
    kid = signing.key_id(active.public_key())
    if kid not in public:
        public[kid] = PublicKey(kid, active.public_key(), _now(), None)
    return Keyring(active, public)


def _published(directory: Path) -> list[PublicKey]:
    out = []
    for path in sorted((directory / "public").glob("*.json")) if directory.exists() else []:
        doc = json.loads(path.read_text())
        key = signing.public_key_from_pem(doc["public_key_pem"].encode())
        out.append(PublicKey(doc["key_id"], key, doc["created_at"], doc.get("retired_at")))
    return out


def public_keys(settings: Settings) -> list[PublicKey]:
    """Every published public key (the configured key's too): what verifiers need, and no more."""
    found = {k.key_id: k for k in _published(settings.keys_dir)}
    if settings.signing_private_key is not None:
        ring = load(settings)
        for kid, key in ring.public.items():
            found.setdefault(kid, key)
    return sorted(found.values(), key=lambda k: k.created_at)

"""The event log's side of the keyring: the writer's signer, which follows a rotation made by
another process, and the readers' key source, which learns a newly published key on first sight."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from config.settings import Settings
from events.envelope import EventEnvelope, with_signature
from events.signatures import TrustedKey
from infra import keys

RELOAD_AFTER_S = 1.0  # an unknown key id rereads the published keys at most this often


class EventSigner:
    """Signs envelopes with the active key, reloaded when `active.pem` changes (a rotation)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._path: Path = settings.keys_dir / keys.ACTIVE_FILE
        self._stamp: float | None = None
        self._ring = self._load()

    def _mtime(self) -> float | None:
        if self.settings.signing_private_key is not None:
            return None
        return self._path.stat().st_mtime_ns / 1e9

    def _load(self) -> keys.Keyring:
        self._stamp = self._mtime()
        return keys.load(self.settings)

    @property
    def key_id(self) -> str:
        return self._ring.key_id

    def sign(self, env: EventEnvelope) -> EventEnvelope:
        key_id, signature = self._ring.sign(env.signed_message)
        return with_signature(env, key_id, signature)

    def sign_all(self, envs: Sequence[EventEnvelope]) -> list[EventEnvelope]:
        if self._mtime() != self._stamp:
            self._ring = self._load()
        return [self.sign(e) for e in envs]


class PublishedKeys:
    """Every public key ever published in the keyring, as events.signatures reads them. A key
    published or retired by another process (a rotation) is seen within RELOAD_AFTER_S."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dir = settings.keys_dir / "public"
        self._keys: dict[str, TrustedKey] = {}
        self._checked_at = float("-inf")
        self._stamp: int | None = None
        self.reload()

    def _dir_stamp(self) -> int | None:
        try:
            return self._dir.stat().st_mtime_ns  # a rename into it (every write) changes it
        except FileNotFoundError:
            return None

    def reload(self) -> None:
        self._checked_at, self._stamp = time.monotonic(), self._dir_stamp()
        self._keys = {
            k.key_id: TrustedKey(
                k.key_id, k.key, datetime.fromisoformat(k.retired_at) if k.retired_at else None
            )
            for k in keys.public_keys(self.settings)
        }

    def lookup(self, key_id: str) -> TrustedKey | None:
        # An unknown key is looked for at once (it may have just been published); a known one's
        # retirement is picked up at the next periodic look.
        found, now = self._keys.get(key_id), time.monotonic()
        if found is None or now - self._checked_at >= RELOAD_AFTER_S:
            self._checked_at = now
            if self._dir_stamp() != self._stamp:
                self.reload()
                found = self._keys.get(key_id)
        return found

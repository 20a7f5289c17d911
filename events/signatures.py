"""What makes a published event believable: its hash, its place in its chain, and its signature.

An envelope of version 2 is signed: `signature` is the standard base64 Ed25519 signature of
`b"veritas-event-v2\\n" + hash` by the key named `key_id` (the first 16 hex characters of the
sha256 of the key's 32 raw public bytes). A key retired by a rotation still verifies what it
signed before its retirement (by the event's `occurred_at`), and nothing after. A version 1
envelope (unsigned, written before signing existed) is believed only where a signed anchor of
the history that existed then covers it (`Legacy`).

Each check returns None or one of the reason codes below; the projector quarantines a refused
event under its reason, and the audit names it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events.envelope import (
    ENVELOPE_VERSION,
    GENESIS_HASH,
    Undecodable,
    published_hash,
    read_published,
    signed_message,
)

Reason = Literal[
    "bad_hash",  # the hash is not the envelope's content
    "unsigned",  # no signature, and no anchor covers it
    "unknown_key",  # signed by a key nobody published
    "retired_key",  # signed by a key after its retirement
    "bad_signature",  # the signature does not verify
    "chain_broken",  # prev_hash is not the previous event's hash
    "version_gap",  # a version is missing before this one
    "conflicting_version",  # another event holds this version already
    "undecodable",  # not an envelope at all
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    key: Ed25519PublicKey
    retired_at: datetime | None = None

    def trusted_at(self, when: datetime) -> bool:
        return self.retired_at is None or when < self.retired_at


class KeySource(Protocol):
    def lookup(self, key_id: str) -> TrustedKey | None: ...


class Legacy(Protocol):
    def anchored(self, aggregate_id: str, version: int, hash_hex: str) -> bool:
        """Whether a signed anchor covers this unsigned event."""
        ...


class NoLegacy:
    def anchored(self, aggregate_id: str, version: int, hash_hex: str) -> bool:
        return False


@dataclass(frozen=True)
class Head:
    """An aggregate's last believed event."""

    version: int
    hash: str


def _verifies(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def check_signature(
    doc: Mapping[str, Any], occurred_at: datetime, keys: KeySource, legacy: Legacy
) -> Reason | None:
    """`doc` is the envelope's JSON (parsed), whose hash has been checked already."""
    version = doc.get("envelope_version")
    if version is None:
        anchored = legacy.anchored(str(doc["aggregate_id"]), int(doc["version"]), doc["hash"])
        return None if anchored else "unsigned"
    if version != ENVELOPE_VERSION:
        return "undecodable"
    key_id, signature = doc.get("key_id"), doc.get("signature")
    if not isinstance(key_id, str) or not isinstance(signature, str):
        return "unsigned"
    key = keys.lookup(key_id)
    if key is None:
        return "unknown_key"
    if not key.trusted_at(occurred_at):
        return "retired_key"
    if not _verifies(key.key, signed_message(doc["hash"]), signature):
        return "bad_signature"
    return None


def check_place(head: Head | None, version: int, prev_hash: str) -> Reason | Literal["seen"] | None:
    """Whether an event extends its aggregate's believed chain. "seen": its version is believed
    already (a copy, or a conflicting event: the caller compares the hashes)."""
    last = head.version if head else 0
    if version <= last:
        return "seen"
    if version != last + 1:
        return "version_gap"
    if prev_hash != (head.hash if head else GENESIS_HASH):
        return "chain_broken"
    return None


def check_event(doc: Mapping[str, Any], keys: KeySource, legacy: Legacy) -> Reason | None:
    """Hash and signature of one published envelope (`doc`, an events.envelope.read_published
    result), wherever it sits in its chain."""
    try:
        if published_hash(doc) != doc["hash"]:
            return "bad_hash"
        occurred_at = datetime.fromisoformat(str(doc.get("occurred_at")))
    except (Undecodable, ValueError):
        return "undecodable"
    if occurred_at.tzinfo is None:
        return "undecodable"
    return check_signature(doc, occurred_at, keys, legacy)


class ChainGate:
    """The same checks for a consumer that reads whole event topics from their start and keeps
    what it believes in memory (the serving controller). `admit` returns the parsed event and
    None when it is believed, or why not ("seen": a copy of a version believed already)."""

    def __init__(self, keys: KeySource, legacy: Legacy) -> None:
        self.keys, self.legacy = keys, legacy
        self.heads: dict[str, Head] = {}

    def admit(self, raw: bytes) -> tuple[dict[str, Any] | None, Reason | Literal["seen"] | None]:
        try:
            doc = read_published(raw)
        except Undecodable:
            return None, "undecodable"
        agg = doc["aggregate_id"]
        why = check_event(doc, self.keys, self.legacy) or check_place(
            self.heads.get(agg), doc["version"], doc["prev_hash"]
        )
        if why is None:
            self.heads[agg] = Head(doc["version"], doc["hash"])
        return doc, why

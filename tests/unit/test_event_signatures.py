"""Signed envelopes (v2): what is signed, and every reason an event is not believed."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from events.envelope import (
    ENVELOPE_VERSION,
    GENESIS_HASH,
    EventEnvelope,
    canonical_json,
    read_published,
    seal,
    with_signature,
)
from events.signatures import ChainGate, Head, NoLegacy, TrustedKey, check_event, check_place

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def kid(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Keys:
    def __init__(self, *trusted: TrustedKey) -> None:
        self.keys = {k.key_id: k for k in trusted}

    def lookup(self, key_id: str) -> TrustedKey | None:
        return self.keys.get(key_id)


class Anchored:
    def __init__(self, heads: dict[str, tuple[int, str]]) -> None:
        self.heads = heads

    def anchored(self, aggregate_id: str, version: int, hash_hex: str) -> bool:
        last, h = self.heads.get(aggregate_id, (0, ""))
        return version < last or (version == last and hash_hex == h)


def event(
    version: int = 1, prev: str = GENESIS_HASH, *, v2: bool = True, **extra: Any
) -> EventEnvelope:
    body: dict[str, Any] = {
        "event_id": uuid4(),
        "type": "ModelRegistered",
        "schema_version": 1,
        "aggregate_type": "Model",
        "aggregate_id": extra.pop("aggregate_id", uuid4()),
        "version": version,
        "occurred_at": extra.pop("occurred_at", T0),
        "actor": "alice",
        "correlation_id": "c",
        "causation_id": "c",
        "payload": {"name": "m", "nested": {"type": "x", "signature": "y"}},
        "prev_hash": prev,
    }
    if v2:
        body["envelope_version"] = ENVELOPE_VERSION
    return seal(body)


def signed(env: EventEnvelope, key: Ed25519PrivateKey) -> EventEnvelope:
    sig = base64.b64encode(key.sign(b"veritas-event-v2\n" + env.hash.encode())).decode()
    return with_signature(env, kid(key), sig)


KEY = Ed25519PrivateKey.generate()
TRUSTED = Keys(TrustedKey(kid(KEY), KEY.public_key()))


def doc(env: EventEnvelope) -> dict[str, Any]:
    return read_published(env.to_bytes())


def test_signing_keeps_the_hash_and_writes_canonical_bytes() -> None:
    env = event()
    s = signed(env, KEY)
    assert s.hash == env.hash == s.computed_hash()
    assert s.to_bytes() == canonical_json(s.to_json_dict())  # the cached bytes are canonical
    assert json.loads(s.to_bytes())["signature"] == s.signature
    assert check_event(doc(s), TRUSTED, NoLegacy()) is None


def test_a_v1_envelope_hashes_as_before() -> None:
    env = event(v2=False)
    assert "envelope_version" not in env.to_json_dict()
    plain = {k: v for k, v in json.loads(env.to_bytes()).items() if k != "hash"}
    want = hashlib.sha256(b"0" * 64 + b"\n" + canonical_json(plain)).hexdigest()
    assert env.hash == want


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(actor="mallory"), "bad_hash"),
        (lambda d: d.pop("signature"), "unsigned"),
        (lambda d: d.update(key_id="0" * 16), "unknown_key"),
        (lambda d: d.update(signature=base64.b64encode(b"x" * 64).decode()), "bad_signature"),
        (lambda d: d.update(signature="not base64!"), "bad_signature"),
        (lambda d: d.update(occurred_at="yesterday"), "bad_hash"),
    ],
)
def test_each_refusal_has_its_reason(mutate: Any, reason: str) -> None:
    d = doc(signed(event(), KEY))
    mutate(d)
    assert check_event(d, TRUSTED, NoLegacy()) == reason


def test_a_forged_chain_with_a_recomputed_hash_is_unsigned_or_badly_signed() -> None:
    real = signed(event(), KEY)
    forged = event(2, real.hash, aggregate_id=real.aggregate_id)  # hash recomputed, no key
    assert check_event(doc(forged), TRUSTED, NoLegacy()) == "unsigned"
    other = Ed25519PrivateKey.generate()
    assert check_event(doc(signed(forged, other)), TRUSTED, NoLegacy()) == "unknown_key"


def test_a_retired_key_verifies_its_history_and_nothing_after() -> None:
    retired = Keys(TrustedKey(kid(KEY), KEY.public_key(), retired_at=T0))
    before = signed(event(occurred_at=T0 - timedelta(seconds=1)), KEY)
    after = signed(event(occurred_at=T0), KEY)
    assert check_event(doc(before), retired, NoLegacy()) is None
    assert check_event(doc(after), retired, NoLegacy()) == "retired_key"


def test_an_unsigned_v1_event_is_believed_only_where_an_anchor_covers_it() -> None:
    first = event(v2=False)
    second = event(2, first.hash, v2=False, aggregate_id=first.aggregate_id)
    anchor = Anchored({str(first.aggregate_id): (2, second.hash)})
    assert check_event(doc(first), anchor, anchor) is None  # type: ignore[arg-type]
    assert check_event(doc(second), TRUSTED, anchor) is None
    assert check_event(doc(second), TRUSTED, NoLegacy()) == "unsigned"
    third = event(3, second.hash, v2=False, aggregate_id=first.aggregate_id)
    assert check_event(doc(third), TRUSTED, anchor) == "unsigned"  # written after the anchor


def test_the_place_in_the_chain() -> None:
    head = Head(3, "h3")
    assert check_place(None, 1, GENESIS_HASH) is None
    assert check_place(None, 2, "x") == "version_gap"
    assert check_place(head, 4, "h3") is None
    assert check_place(head, 4, "other") == "chain_broken"
    assert check_place(head, 3, "h2") == "seen"
    assert check_place(head, 6, "h5") == "version_gap"


def test_a_signed_envelope_round_trips_through_its_bytes() -> None:
    s = signed(event(), KEY)
    back = EventEnvelope.from_bytes(s.to_bytes())
    assert back == s and back.to_bytes() == s.to_bytes()
    with pytest.raises(ValueError, match="signed already"):
        with_signature(s, "k", "sig")


def test_the_gate_of_a_whole_topic_reader_believes_one_chain() -> None:
    first = signed(event(), KEY)
    second = signed(event(2, first.hash, aggregate_id=first.aggregate_id), KEY)
    forged = event(2, first.hash, aggregate_id=first.aggregate_id)  # unsigned
    gate = ChainGate(TRUSTED, NoLegacy())
    assert gate.admit(first.to_bytes())[1] is None
    assert gate.admit(forged.to_bytes())[1] == "unsigned"
    assert gate.admit(b"junk") == (None, "undecodable")
    assert gate.admit(second.to_bytes())[1] is None
    assert gate.admit(second.to_bytes())[1] == "seen"  # a copy
    third = signed(event(4, second.hash, aggregate_id=first.aggregate_id), KEY)
    assert gate.admit(third.to_bytes())[1] == "version_gap"

"""DESIGN's event envelope and its per-aggregate hash chain.

hash = sha256_hex(prev_hash + "\\n" + canonical_json(envelope without "hash", "key_id" and
"signature")), where canonical JSON has sorted keys, separators (",", ":"), UTF-8 and no ASCII
escaping. The first event of an aggregate chains from 64 zeros.

Envelope version 2 (`"envelope_version": 2`, inside the hash) adds an Ed25519 signature of the
hash by the writer's key, in `key_id` and `signature`, outside the hash as "hash" itself is
(events.signatures). Version 1 envelopes have none of the three fields and hash as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, PrivateAttr

GENESIS_HASH = "0" * 64
ENVELOPE_VERSION = 2
# Written after the hash is computed, so outside it. The v2 fields are left out when absent, so
# that a v1 envelope reads back and hashes exactly as it was written.
UNHASHED = frozenset({"hash", "key_id", "signature"})
_OPTIONAL = ("envelope_version", "key_id", "signature")


_PLAIN = frozenset({str, int, bool, type(None)})


def _plain(obj: Any) -> bool:
    """Only str, int, bool, None, dict and list, exactly (no float, no subclass, no other type)."""
    todo = [obj]
    while todo:
        o = todo.pop()
        t = type(o)
        if t is dict:
            todo.extend(o.values())
        elif t is list:
            todo.extend(o)
        elif t not in _PLAIN:
            return False
    return True


def canonical_json(obj: Any) -> bytes:
    # orjson writes the same bytes as the json module for plain JSON values, but spells floats
    # differently (1e-05 as 0.00001, 2e-09 as 2e-9) and would serialise types the json module
    # refuses (datetime, UUID). Anything but plain values takes the json module, whose output is
    # the contract; non-string keys and 64-bit overflow raise in orjson and take it too.
    if _plain(obj):
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            pass
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(body)).hexdigest()


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: str
    schema_version: int
    aggregate_type: str
    aggregate_id: UUID
    version: int
    occurred_at: datetime
    actor: str
    correlation_id: str
    causation_id: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    envelope_version: int | None = None
    key_id: str | None = None
    signature: str | None = None
    _canonical: bytes | None = PrivateAttr(default=None)  # set by seal(), which computed it

    def __eq__(self, other: object) -> bool:  # the fields only, not the cached bytes
        return isinstance(other, EventEnvelope) and self.__dict__ == other.__dict__

    __hash__ = BaseModel.__hash__

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> EventEnvelope:
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._canonical = None  # the cached bytes were those of the original
        return copy

    def to_json_dict(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        for name in _OPTIONAL:
            if doc[name] is None:
                del doc[name]
        return doc

    def to_bytes(self) -> bytes:
        return self._canonical or canonical_json(self.to_json_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> EventEnvelope:
        return cls.model_validate_json(raw)

    def computed_hash(self) -> str:
        body = {k: v for k, v in self.to_json_dict().items() if k not in UNHASHED}
        return chain_hash(self.prev_hash, body)

    @property
    def signed_message(self) -> bytes:
        return signed_message(self.hash)


def seal(body: dict[str, Any]) -> EventEnvelope:
    """Build an envelope from its fields (all but "hash"), computing the hash."""
    unsealed = EventEnvelope.model_validate({**body, "hash": ""})
    jsonable = unsealed.to_json_dict()
    jsonable.pop("hash")
    if UNHASHED & jsonable.keys():
        raise ValueError("a sealed event is signed after its hash is computed")
    hashed = canonical_json(jsonable)
    digest = hashlib.sha256(body["prev_hash"].encode() + b"\n" + hashed).hexdigest()
    env = unsealed
    env.__dict__["hash"] = digest  # validated above and not shared yet; only the hash is new
    # With sorted keys "hash" sits between "event_id" and "occurred_at". The first `,"occurred_at":`
    # is that key: inside a string value a quote is always escaped.
    member = b',"hash":"' + digest.encode() + b'","occurred_at":'
    env._canonical = hashed.replace(b',"occurred_at":', member, 1)
    return env


SIGNED_PREFIX = b"veritas-event-v2\n"


def signed_message(hash_hex: str) -> bytes:
    """What an event's signature signs: a domain-separation prefix and the event's hash."""
    return SIGNED_PREFIX + hash_hex.encode()


def with_signature(env: EventEnvelope, key_id: str, signature: str) -> EventEnvelope:
    """`env` with its signature. The hash is unchanged, and so are the canonical bytes but for
    the two new members, inserted where sorted keys put them."""
    if env.key_id is not None or env.signature is not None:
        raise ValueError("the event is signed already")
    signed = env.model_copy(update={"key_id": key_id, "signature": signature})
    cached = env._canonical
    if cached is not None:
        # "key_id" sorts right after "hash", and "signature" right before "type", the last member
        # but "version" (an integer): the last `,"type":` is the top-level one, since a payload
        # (which sorts before it) may hold its own "type" members.
        kid, sig = orjson.dumps(key_id), orjson.dumps(signature)
        head = b',"hash":"' + env.hash.encode() + b'"'
        at = cached.index(head) + len(head)
        cached = cached[:at] + b',"key_id":' + kid + cached[at:]
        at = cached.rindex(b',"type":')
        signed._canonical = cached[:at] + b',"signature":' + sig + cached[at:]
    return signed


@dataclass(frozen=True)
class ChainBreak:
    aggregate_type: str
    aggregate_id: str
    version: int
    reason: str


def verify_chain(envelopes: Iterable[EventEnvelope]) -> ChainBreak | None:
    """Verify one aggregate's events (models in memory), given in version order."""
    return verify_published(env.to_json_dict() for env in envelopes)


# --- verifying what was published -----------------------------------------------------------------
# An auditor holds bytes, not models: DESIGN's rule is applied to the JSON itself (the json
# module's parse of the bytes, "hash" dropped, canonical_json, sha256), never to a re-serialised
# model, which may spell a value differently (a timestamp's ".000000Z") than the writer hashed.

_CHAIN_FIELDS: dict[str, type] = {
    "aggregate_type": str,
    "aggregate_id": str,
    "version": int,
    "prev_hash": str,
    "hash": str,
}


class Undecodable(ValueError):
    """Published bytes that are not an event envelope DESIGN's rule can be applied to."""


def read_published(raw: bytes | str) -> dict[str, Any]:
    """A published event as DESIGN's rule reads it: the json module's parse of its bytes."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise Undecodable("nested too deep for the json module") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise Undecodable(f"not UTF-8 JSON: {exc}") from None
    return as_published(doc)


def as_published(doc: Any) -> dict[str, Any]:
    """`doc`, a parsed JSON value, checked to carry what the chain is verified by."""
    if not isinstance(doc, dict):
        raise Undecodable(f"not a JSON object but {type(doc).__name__}")
    for field, kind in _CHAIN_FIELDS.items():
        if type(doc.get(field)) is not kind:
            raise Undecodable(f"{field!r} is missing or not a {kind.__name__}")
    return doc


def published_hash(doc: Mapping[str, Any]) -> str:
    """DESIGN's hash of a parsed published envelope."""
    try:
        return chain_hash(doc["prev_hash"], {k: v for k, v in doc.items() if k not in UNHASHED})
    except (RecursionError, UnicodeEncodeError) as exc:
        raise Undecodable(f"canonical JSON cannot be written: {type(exc).__name__}") from None


def verify_published(docs: Iterable[Mapping[str, Any]]) -> ChainBreak | None:
    """Verify one aggregate's published events (each a `read_published` result, or any mapping
    with the envelope's fields), given in version order. Returns the first break, if any."""
    prev, expected_version = GENESIS_HASH, 1
    for doc in docs:
        where = (str(doc["aggregate_type"]), str(doc["aggregate_id"]), int(doc["version"]))
        if doc["version"] != expected_version:
            return ChainBreak(*where, f"expected version {expected_version}")
        if doc["prev_hash"] != prev:
            return ChainBreak(*where, "prev_hash does not match the previous event's hash")
        try:
            if published_hash(doc) != doc["hash"]:
                return ChainBreak(*where, "hash does not match the event's content")
        except Undecodable as exc:
            return ChainBreak(*where, str(exc))
        prev, expected_version = doc["hash"], expected_version + 1
    return None

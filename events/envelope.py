"""DESIGN's event envelope and its per-aggregate hash chain.

hash = sha256_hex(prev_hash + "\\n" + canonical_json(envelope without "hash")), where canonical JSON
has sorted keys, separators (",", ":"), UTF-8 and no ASCII escaping. The first event of an
aggregate chains from 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

GENESIS_HASH = "0" * 64


def canonical_json(obj: Any) -> bytes:
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

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json_dict())

    @classmethod
    def from_bytes(cls, raw: bytes) -> EventEnvelope:
        return cls.model_validate_json(raw)

    def computed_hash(self) -> str:
        body = self.to_json_dict()
        body.pop("hash")
        return chain_hash(self.prev_hash, body)


def seal(body: dict[str, Any]) -> EventEnvelope:
    """Build an envelope from its fields (all but "hash"), computing the hash."""
    jsonable = EventEnvelope.model_validate({**body, "hash": ""}).to_json_dict()
    jsonable.pop("hash")
    return EventEnvelope.model_validate(
        {**jsonable, "hash": chain_hash(body["prev_hash"], jsonable)}
    )


@dataclass(frozen=True)
class ChainBreak:
    aggregate_type: str
    aggregate_id: str
    version: int
    reason: str


def verify_chain(envelopes: Iterable[EventEnvelope]) -> ChainBreak | None:
    """Verify one aggregate's events, given in version order. Returns the first break, if any."""
    prev, expected_version = GENESIS_HASH, 1
    for env in envelopes:
        where = (env.aggregate_type, str(env.aggregate_id), env.version)
        if env.version != expected_version:
            return ChainBreak(*where, f"expected version {expected_version}")
        if env.prev_hash != prev:
            return ChainBreak(*where, "prev_hash does not match the previous event's hash")
        if env.computed_hash() != env.hash:
            return ChainBreak(*where, "hash does not match the event's content")
        prev, expected_version = env.hash, expected_version + 1
    return None

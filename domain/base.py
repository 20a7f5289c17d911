"""Aggregate base: records sealed, hash-chained envelopes and rebuilds state from them."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Self
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from events.base import DomainEvent
from events.catalog import EVENT_TYPES
from events.envelope import ENVELOPE_VERSION, GENESIS_HASH, EventEnvelope, seal

ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://veritas.dev/aggregates")
_RECORDED = itertools.count()  # process-wide recording order, for events across aggregates


@functools.lru_cache(maxsize=65536)
def aggregate_id(kind: str, *parts: str) -> UUID:
    """Deterministic aggregate ids, so a name always maps to the same stream."""
    return uuid5(ID_NAMESPACE, "/".join((kind, *parts)))


@dataclass(frozen=True)
class Meta:
    """Who and what caused the events a command records."""

    actor: str
    correlation_id: str
    causation_id: str
    occurred_at: datetime


class Aggregate:
    aggregate_type: ClassVar[str]
    context: ClassVar[str]

    def __init__(self, aggregate_id: UUID) -> None:
        self.id = aggregate_id
        self.version = 0
        self.last_hash = GENESIS_HASH
        self.pending: list[EventEnvelope] = []
        self.pending_order: list[int] = []

    @property
    def exists(self) -> bool:
        return self.version > 0

    @classmethod
    def rehydrate(cls, aggregate_id: UUID, envelopes: list[EventEnvelope]) -> Self:
        agg = cls(aggregate_id)
        for env in envelopes:
            agg._apply_envelope(env)
        return agg

    def record(self, event: DomainEvent, meta: Meta) -> None:
        env = seal(
            {
                "event_id": uuid4(),
                "type": type(event).__name__,
                "schema_version": event.schema_version,
                "aggregate_type": self.aggregate_type,
                "aggregate_id": self.id,
                "version": self.version + 1,
                "occurred_at": meta.occurred_at,
                "actor": meta.actor,
                "correlation_id": meta.correlation_id,
                "causation_id": meta.causation_id,
                "payload": event.model_dump(mode="json"),
                "prev_hash": self.last_hash,
                "envelope_version": ENVELOPE_VERSION,
            }
        )
        self.apply(event, env)  # the event object itself: no need to re-validate its payload
        self.version, self.last_hash = env.version, env.hash
        self.pending.append(env)
        self.pending_order.append(next(_RECORDED))

    def _apply_envelope(self, env: EventEnvelope) -> None:
        self.apply(EVENT_TYPES[env.type].model_validate(env.payload), env)
        self.version = env.version
        self.last_hash = env.hash

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        raise NotImplementedError

"""Unit of work over the event store: an identity map of loaded aggregates for one batch of
commands, with per-command undo so a failed command leaves no trace in the batch."""

from __future__ import annotations

import copy
from typing import TypeVar
from uuid import UUID

from domain.base import Aggregate
from events.envelope import EventEnvelope
from infra.postgres.eventstore import EventStore

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._cache: dict[UUID, Aggregate] = {}
        self._undo: dict[UUID, Aggregate | None] = {}
        self._prefetched: dict[UUID, list[EventEnvelope]] = {}

    def prefetch(self, aggregate_ids: list[UUID]) -> None:
        """Load the streams a batch will need in one round trip."""
        wanted = [a for a in dict.fromkeys(aggregate_ids) if a not in self._cache]
        self._prefetched.update(self.store.load_many(wanted))

    def get(self, cls: type[A], aggregate_id: UUID) -> A:
        agg = self._cache.get(aggregate_id)
        if agg is None:
            stream = self._prefetched.pop(aggregate_id, None)
            if stream is None:
                stream = self.store.load(aggregate_id)
            agg = cls.rehydrate(aggregate_id, stream)
            self._cache[aggregate_id] = agg
            self._undo.setdefault(aggregate_id, None)
        elif aggregate_id not in self._undo:
            self._undo[aggregate_id] = copy.deepcopy(agg)
        if not isinstance(agg, cls):
            raise TypeError(f"{aggregate_id} is a {type(agg).__name__}, not a {cls.__name__}")
        return agg

    def begin_command(self) -> None:
        self._undo = {}

    def end_command(self) -> list[tuple[str, EventEnvelope]]:
        """The events the current command recorded, in the order they were recorded."""
        events = self.recorded()
        self._undo = {}
        return events

    def recorded(self) -> list[tuple[str, EventEnvelope]]:
        """The events the current command has recorded so far (it may still be rolled back)."""
        out: list[tuple[int, str, EventEnvelope]] = []
        for agg_id, before in self._undo.items():
            agg = self._cache[agg_id]
            start = len(before.pending) if before is not None else 0
            out.extend(
                (agg.pending_order[i], agg.context, agg.pending[i])
                for i in range(start, len(agg.pending))
            )
        return [(ctx, env) for _, ctx, env in sorted(out, key=lambda t: t[0])]

    def rollback_command(self) -> None:
        for agg_id, before in self._undo.items():
            if before is None:
                self._cache.pop(agg_id, None)
            else:
                self._cache[agg_id] = before
        self._undo = {}

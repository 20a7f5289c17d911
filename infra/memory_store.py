"""The in-memory fake of the event store port, for unit tests: it passes the same contract tests
(tests/contract/test_eventstore.py) as the Postgres adapter."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from uuid import UUID

from events.envelope import EventEnvelope
from events.results import CommandResult
from infra.postgres.eventstore import (
    PARKED_TABLE,
    ConcurrencyError,
    Notification,
    stored_event,
)


class InMemoryEventStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[UUID, list[EventEnvelope]] = {}
        self._log: list[Notification] = []
        self._results: dict[str, CommandResult] = {}
        self._committed = threading.Condition()
        self._unseen = False
        self._parked: dict[str, bytes] = {}

    def wait_for_events(self, timeout_s: float) -> None:
        with self._committed:
            self._committed.wait_for(lambda: self._unseen, timeout_s)
            self._unseen = False

    def load(self, aggregate_id: UUID) -> list[EventEnvelope]:
        return list(self._streams.get(aggregate_id, []))

    parked_table = PARKED_TABLE

    def park_original(self, original: bytes) -> str:
        digest = hashlib.sha256(original).hexdigest()
        self._parked.setdefault(digest, bytes(original))
        return digest

    def parked_original(self, sha256: str) -> bytes | None:
        return self._parked.get(sha256)

    def load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, list[EventEnvelope]]:
        return {a: self.load(a) for a in aggregate_ids}

    def commit(
        self, events: Sequence[tuple[str, EventEnvelope]], results: Sequence[CommandResult]
    ) -> None:
        with self._lock:
            taken = {(e.aggregate_id, e.version) for _, e in events}
            if len(taken) != len(events) or any(
                v <= len(self._streams.get(a, [])) for a, v in taken
            ):
                raise ConcurrencyError("an event version is already taken")
            ids = [r.command_id for r in results]
            if len(set(ids)) != len(ids) or any(i in self._results for i in ids):
                raise ConcurrencyError("command_id already recorded")
            for context, env in events:
                self._streams.setdefault(env.aggregate_id, []).append(env)
                s = stored_event(context, env)
                self._log.append(
                    Notification(
                        len(self._log) + 1, s.topic, env.aggregate_id, env.version, s.state
                    )
                )
            self._results.update({r.command_id: r for r in results})
        with self._committed:
            self._unseen = True
            self._committed.notify_all()

    def find_results(self, command_ids: Sequence[str]) -> dict[str, CommandResult]:
        return {c: self._results[c] for c in command_ids if c in self._results}

    def notifications(self, after: int, limit: int) -> list[Notification]:
        return self._log[after : after + limit]

    def max_notification_id(self) -> int:
        return len(self._log)

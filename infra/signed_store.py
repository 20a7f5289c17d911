"""The event store as the command handler writes through it: every event is signed on commit.

A decorator, not an adapter: reads, results and parked originals pass through unchanged, and
signing leaves the hash (and so the chain and the aggregates' state) as it was."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from events.envelope import EventEnvelope
from events.results import CommandResult
from infra.event_keys import EventSigner
from infra.postgres.eventstore import EventStore, Notification


class SigningEventStore:
    def __init__(self, inner: EventStore, signer: EventSigner) -> None:
        self.inner = inner
        self.signer = signer

    def commit(
        self, events: Sequence[tuple[str, EventEnvelope]], results: Sequence[CommandResult]
    ) -> None:
        signed = self.signer.sign_all([e for _, e in events])
        self.inner.commit([(c, s) for (c, _), s in zip(events, signed, strict=True)], results)

    def load(self, aggregate_id: UUID) -> list[EventEnvelope]:
        return self.inner.load(aggregate_id)

    def load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, list[EventEnvelope]]:
        return self.inner.load_many(aggregate_ids)

    def find_results(self, command_ids: Sequence[str]) -> dict[str, CommandResult]:
        return self.inner.find_results(command_ids)

    def notifications(self, after: int, limit: int) -> list[Notification]:
        return self.inner.notifications(after, limit)

    def max_notification_id(self) -> int:
        return self.inner.max_notification_id()

    def wait_for_events(self, timeout_s: float) -> None:
        self.inner.wait_for_events(timeout_s)

    @property
    def parked_table(self) -> str:
        return self.inner.parked_table

    def park_original(self, original: bytes) -> str:
        return self.inner.park_original(original)

    def parked_original(self, sha256: str) -> bytes | None:
        return self.inner.parked_original(sha256)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

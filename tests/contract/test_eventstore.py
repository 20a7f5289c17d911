"""One contract for the EventStore port, run against both adapters: "memory" (InMemoryEventStore)
and "postgres" (PostgresEventStore on the real database, a fresh schema per test).
`make test-unit` runs only the memory half (`-k memory`)."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from config.settings import Settings
from events.envelope import GENESIS_HASH, EventEnvelope, seal, verify_chain
from events.results import CommandResult, EventRef
from infra.memory_store import InMemoryEventStore
from infra.postgres.eventstore import (
    ConcurrencyError,
    EventStore,
    PostgresEventStore,
    datastore_from_dsn,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    settings: Settings = request.getfixturevalue("infra")
    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    datastore = datastore_from_dsn(settings.dsn, schema=schema)
    pg = PostgresEventStore(datastore)
    pg.create_tables()
    try:
        yield pg
    finally:
        pg.close()
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class Stream:
    """Builds a valid hash chain of envelopes for one aggregate."""

    def __init__(self, aggregate_type: str = "RegisteredModel", context: str = "registry") -> None:
        self.id = uuid.uuid4()
        self.aggregate_type = aggregate_type
        self.context = context
        self.version = 0
        self.last_hash = GENESIS_HASH

    def next(self, **payload: Any) -> tuple[str, EventEnvelope]:
        self.version += 1
        env = seal(
            {
                "event_id": uuid.uuid4(),
                "type": "ModelMetadataUpdated",
                "schema_version": 1,
                "aggregate_type": self.aggregate_type,
                "aggregate_id": self.id,
                "version": self.version,
                "occurred_at": T0 + timedelta(seconds=self.version),
                "actor": "alice",
                "correlation_id": "corr",
                "causation_id": f"cmd-{self.version}",
                "payload": payload or {"description": f"v{self.version} — ünïcødé ✓"},
                "prev_hash": self.last_hash,
            }
        )
        self.last_hash = env.hash
        return self.context, env

    def take(self, n: int) -> list[tuple[str, EventEnvelope]]:
        return [self.next() for _ in range(n)]


def accepted(command_id: str, events: list[tuple[str, EventEnvelope]]) -> CommandResult:
    refs = [
        EventRef(event_id=e.event_id, aggregate_id=e.aggregate_id, version=e.version)
        for _, e in events
    ]
    return CommandResult(command_id=command_id, status="accepted", events=refs)


def rejected(command_id: str) -> CommandResult:
    return CommandResult.rejected(
        command_id, "invariant_violation", "nope — non", sub_code="self_approval"
    )


def envs(events: list[tuple[str, EventEnvelope]]) -> list[EventEnvelope]:
    return [e for _, e in events]


def all_notifications(store: EventStore) -> list[Any]:
    return store.notifications(0, 1_000_000)


# --- load -----------------------------------------------------------------------------------------


def test_empty_store(store: EventStore) -> None:
    assert store.load(uuid.uuid4()) == []
    assert store.find_results(["nothing"]) == {}
    assert store.find_results([]) == {}
    assert store.notifications(0, 10) == []
    assert store.max_notification_id() == 0


def test_load_returns_committed_envelopes_in_version_order(store: EventStore) -> None:
    a, b = Stream(), Stream("Submission", "governance")
    first = a.take(2)
    store.commit(first + b.take(1), [accepted("c1", first)])
    second = a.take(2)
    store.commit(second, [accepted("c2", second)])
    loaded = store.load(a.id)
    assert [e.version for e in loaded] == [1, 2, 3, 4]
    assert loaded == envs(first + second)
    assert verify_chain(loaded) is None
    assert [e.version for e in store.load(b.id)] == [1]


def test_envelopes_roundtrip_exactly(store: EventStore) -> None:
    a = Stream()
    ev = [a.next(description="Modèle — 模型 ✓", tags={"équipe": "risque"})]
    store.commit(ev, [])
    (loaded,) = store.load(a.id)
    assert loaded == ev[0][1]
    assert loaded.to_bytes() == ev[0][1].to_bytes()
    assert loaded.computed_hash() == loaded.hash


# --- optimistic concurrency -----------------------------------------------------------------------


def test_taken_version_raises_and_stores_nothing_of_that_commit(store: EventStore) -> None:
    a, b = Stream(), Stream()
    store.commit(a.take(1), [accepted("c1", [])])
    before_max = store.max_notification_id()

    rival = Stream()
    rival.id = a.id  # another writer that also thinks version 1 is free
    clash = rival.take(2)
    innocent = b.take(1)
    with pytest.raises(ConcurrencyError):
        store.commit(innocent + clash, [accepted("c2", clash), rejected("c3")])

    assert len(store.load(a.id)) == 1
    assert store.load(b.id) == []
    assert store.find_results(["c2", "c3"]) == {}
    assert store.max_notification_id() == before_max
    assert len(all_notifications(store)) == 1


def test_same_version_twice_in_one_commit_raises(store: EventStore) -> None:
    a = Stream()
    (ctx, e1) = a.next()
    twin = e1.model_copy(update={"event_id": uuid.uuid4()})
    with pytest.raises(ConcurrencyError):
        store.commit([(ctx, e1), (ctx, twin)], [accepted("c1", [])])
    assert store.load(a.id) == []
    assert store.find_results(["c1"]) == {}


def test_repeated_command_id_raises_and_stores_nothing_of_that_commit(store: EventStore) -> None:
    a = Stream()
    store.commit(a.take(1), [accepted("dup", [])])
    more = a.take(1)
    with pytest.raises(ConcurrencyError):
        store.commit(more, [rejected("fresh"), accepted("dup", more)])
    assert len(store.load(a.id)) == 1
    assert store.find_results(["dup", "fresh"]) == {"dup": accepted("dup", [])}
    assert len(all_notifications(store)) == 1
    # the same events commit fine under a new command_id
    store.commit(more, [accepted("dup-2", more)])
    assert [e.version for e in store.load(a.id)] == [1, 2]


def test_repeated_command_id_in_a_results_only_commit_raises(store: EventStore) -> None:
    store.commit([], [rejected("r1")])
    with pytest.raises(ConcurrencyError):
        store.commit([], [rejected("r1")])
    with pytest.raises(ConcurrencyError):
        store.commit([], [rejected("r2"), rejected("r2")])
    assert store.find_results(["r1", "r2"]) == {"r1": rejected("r1")}


def test_a_failed_commit_does_not_block_the_next_one(store: EventStore) -> None:
    a = Stream()
    store.commit(a.take(1), [])
    rival = Stream()
    rival.id = a.id
    with pytest.raises(ConcurrencyError):
        store.commit(rival.take(1), [])
    store.commit(a.take(1), [accepted("ok", [])])
    assert [e.version for e in store.load(a.id)] == [1, 2]
    assert store.load(a.id)[1].prev_hash == store.load(a.id)[0].hash


# --- results --------------------------------------------------------------------------------------


def test_find_results_returns_stored_results(store: EventStore) -> None:
    a = Stream()
    ev = a.take(2)
    results = [
        accepted("c-accepted", ev),
        rejected("c-rejected"),
        CommandResult.rejected("c-plain", "not_found", "model 'x' is not registered"),
    ]
    store.commit(ev, results)
    found = store.find_results(["c-accepted", "c-rejected", "c-plain", "unknown"])
    assert found == {r.command_id: r for r in results}
    assert found["c-accepted"].events[1].version == 2
    assert found["c-rejected"].sub_code == "self_approval"
    assert store.find_results(["c-plain"]) == {"c-plain": results[2]}


def test_results_only_commits(store: EventStore) -> None:
    store.commit([], [rejected("only-1")])
    store.commit([], [rejected("only-2"), rejected("only-3")])
    assert set(store.find_results(["only-1", "only-2", "only-3"])) == {"only-1", "only-2", "only-3"}
    assert store.notifications(0, 10) == []
    assert store.max_notification_id() == 0


def test_empty_commit_is_a_no_op(store: EventStore) -> None:
    store.commit([], [])
    assert store.max_notification_id() == 0


# --- notifications --------------------------------------------------------------------------------


def test_notifications_follow_commit_order_and_resume_from_after(store: EventStore) -> None:
    a, b, c = Stream(), Stream("Submission", "governance"), Stream("Dataset")
    commits = [a.take(2) + b.take(1), c.take(1), b.take(2) + a.take(1), a.take(1)]
    for n, events in enumerate(commits):
        store.commit(events, [accepted(f"c{n}", events)])
    expected = [e for batch in commits for _, e in batch]

    notes = all_notifications(store)
    assert [(n.aggregate_id, n.version) for n in notes] == [
        (e.aggregate_id, e.version) for e in expected
    ]
    ids = [n.id for n in notes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] >= 1
    assert store.max_notification_id() == ids[-1]
    assert [EventEnvelope.from_bytes(n.state) for n in notes] == expected
    assert {n.topic for n in notes} == {"registry.events", "governance.events"}
    assert all(
        n.topic == ("governance.events" if n.aggregate_id == b.id else "registry.events")
        for n in notes
    )

    # page through with a small limit, resuming after the last id seen
    seen: list[Any] = []
    after = 0
    while page := store.notifications(after, 2):
        assert len(page) <= 2
        seen.extend(page)
        after = page[-1].id
    assert [n.id for n in seen] == ids
    assert store.notifications(ids[-1], 10) == []
    assert store.notifications(ids[2], 3) == notes[3:6]
    assert store.notifications(0, 0) == []


def test_notifications_resume_across_a_failed_commit(store: EventStore) -> None:
    a = Stream()
    store.commit(a.take(1), [])
    (first,) = all_notifications(store)
    rival = Stream()
    rival.id = a.id
    with pytest.raises(ConcurrencyError):
        store.commit(rival.take(3), [])
    later = a.take(2)
    store.commit(later, [])
    tail = store.notifications(first.id, 10)
    assert [(n.aggregate_id, n.version) for n in tail] == [(a.id, 2), (a.id, 3)]
    assert [EventEnvelope.from_bytes(n.state) for n in tail] == envs(later)
    assert store.max_notification_id() == tail[-1].id


def test_notification_state_is_the_canonical_envelope(store: EventStore) -> None:
    a = Stream()
    ev = a.take(1)
    store.commit(ev, [])
    (note,) = all_notifications(store)
    assert isinstance(note.aggregate_id, UUID) and note.aggregate_id == a.id
    assert note.version == 1
    assert note.state == ev[0][1].to_bytes()
    doc = json.loads(note.state)
    assert doc["hash"] == ev[0][1].hash and doc["prev_hash"] == GENESIS_HASH


def test_a_commit_wakes_a_reader_waiting_for_events(store: EventStore) -> None:
    # The relay waits like this between batches; a commit must end the wait, not the timeout.
    store.wait_for_events(0.01)  # a reader that has looked once hears every commit from then on
    woke = threading.Event()

    def reader() -> None:
        store.wait_for_events(60.0)
        woke.set()

    waiting = threading.Thread(target=reader)
    waiting.start()
    store.commit([Stream().next()], [])
    assert woke.wait(20.0)
    waiting.join()


def test_parked_originals_are_kept_whole_once_by_digest(store: EventStore) -> None:
    original = b"\x00\xff" + b"x" * 300_000
    digest = store.park_original(original)
    assert digest == hashlib.sha256(original).hexdigest()
    assert store.park_original(original) == digest  # idempotent
    assert store.parked_original(digest) == original
    assert store.parked_original("0" * 64) is None

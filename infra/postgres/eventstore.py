"""The event store port and its Postgres adapter (the eventsourcing library's application
recorder); the in-memory fake for unit tests is infra.memory_store. Both pass
tests/contract/test_eventstore.py.

A commit stores the events of a batch of commands together with those commands' results, in one
transaction: the results table is the dedupe index, so a command either has its events and its
result, or neither.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from events.catalog import EVENT_TOPICS
from events.envelope import EventEnvelope
from events.results import CommandResult

EVENTS_TABLE = "veritas_events"
RESULTS_TABLE = "veritas_command_results"
PARKED_TABLE = "veritas_dead_letter_originals"


class ConcurrencyError(Exception):
    """An event version or a command_id was already taken: another writer got there first."""


@dataclass(frozen=True)
class Notification:
    id: int
    topic: str
    aggregate_id: UUID
    version: int
    state: bytes


class EventStore(Protocol):
    def load(self, aggregate_id: UUID) -> list[EventEnvelope]: ...
    def load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, list[EventEnvelope]]: ...
    def commit(
        self, events: Sequence[tuple[str, EventEnvelope]], results: Sequence[CommandResult]
    ) -> None: ...
    def find_results(self, command_ids: Sequence[str]) -> dict[str, CommandResult]: ...
    def notifications(self, after: int, limit: int) -> list[Notification]: ...
    def max_notification_id(self) -> int: ...
    def wait_for_events(self, timeout_s: float) -> None:
        """Block until events may have been committed since the last call, or the timeout."""
        ...

    @property
    def parked_table(self) -> str: ...
    def park_original(self, original: bytes) -> str:
        """Keep a dead letter's original bytes too large for its topic; returns their sha256
        (idempotent: the same bytes are kept once)."""
        ...

    def parked_original(self, sha256: str) -> bytes | None: ...


def stored_event(context: str, env: EventEnvelope) -> StoredEvent:
    return StoredEvent(
        originator_id=env.aggregate_id,
        originator_version=env.version,
        topic=EVENT_TOPICS[context],
        state=env.to_bytes(),
    )


class _Recorder(PostgresApplicationRecorder):
    """Adds the command results to the same transaction as the events, and inserts both as flat
    arrays in binary (%b): psycopg dumps the library's array of a composite type, and any array in
    text format, with a regex escape per element in Python (about 0.2 ms per event)."""

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kw: Any
    ) -> None:
        results: Sequence[CommandResult] = kw.get("results", ())
        if not results:
            return
        # The nested pipeline syncs on exit, so a repeated command_id raises its IntegrityError
        # here: left to the library's later sync, it can surface as PipelineAborted instead.
        with curs.connection.pipeline():
            curs.execute(
                f"INSERT INTO {self.datastore.schema}.{RESULTS_TABLE} (command_id, result) "
                "SELECT * FROM unnest(%b::text[], %b::jsonb[])",
                (
                    [r.command_id for r in results],
                    [Jsonb(r.model_dump(mode="json")) for r in results],
                ),
            )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kw: Any
    ) -> None:
        # As the library does: the table lock keeps notification ids in commit order for readers
        # tailing the log, and the NOTIFY wakes them when this transaction commits.
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            f"INSERT INTO {self.datastore.schema}.{self.events_table_name}"
            " (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
            " RETURNING notification_id",
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
        )


def datastore_from_dsn(dsn: str, schema: str = "public", pool_size: int = 2) -> PostgresDatastore:
    info = conninfo_to_dict(dsn)
    return PostgresDatastore(
        dbname=str(info.get("dbname", "postgres")),
        host=str(info.get("host", "127.0.0.1")),
        port=str(info.get("port", 5432)),
        user=str(info.get("user", "postgres")),
        password=str(info.get("password", "")),
        pool_size=pool_size,
        schema=schema,
        lock_timeout=10,
        pre_ping=True,  # a pooled connection that died with a database restart is replaced
    )


class PostgresEventStore:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.recorder = _Recorder(datastore, events_table_name=EVENTS_TABLE)
        self._listener: psycopg.Connection | None = None

    def wait_for_events(self, timeout_s: float) -> None:
        # The recorder NOTIFYs its channel in every insert transaction; Postgres delivers it on
        # commit. The listener is its own connection (on the datastore's parameters), not a
        # pooled one: it stays in LISTEN for the life of the process.
        if self._listener is None:
            kwargs = self.datastore.pool.kwargs
            assert isinstance(kwargs, dict)  # the datastore passes a plain dict
            params = {k: v for k, v in kwargs.items() if k != "row_factory"}
            self._listener = psycopg.connect(autocommit=True, **params)
            self._listener.execute(f'LISTEN "{self.recorder.channel_name}"'.encode())
            return  # a commit just before LISTEN would go unheard: let the caller look first
        try:
            for _ in self._listener.notifies(timeout=timeout_s, stop_after=1):
                pass
        except psycopg.Error:
            # The database went away: listen again on a new connection at the next call.
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None
            raise

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.datastore.close()

    def create_tables(self) -> None:
        self.recorder.create_table()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                f"CREATE TABLE IF NOT EXISTS {self.datastore.schema}.{RESULTS_TABLE} ("
                "command_id text PRIMARY KEY, result jsonb NOT NULL, "
                "recorded_at timestamptz NOT NULL DEFAULT now())"
            )
            curs.execute(
                f"CREATE TABLE IF NOT EXISTS {self.datastore.schema}.{PARKED_TABLE} ("
                "sha256 text PRIMARY KEY, original bytea NOT NULL, "
                "stored_at timestamptz NOT NULL DEFAULT now())"
            )

    parked_table = PARKED_TABLE

    def park_original(self, original: bytes) -> str:
        digest = hashlib.sha256(original).hexdigest()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                f"INSERT INTO {self.datastore.schema}.{PARKED_TABLE} (sha256, original)"
                " VALUES (%s, %s) ON CONFLICT (sha256) DO NOTHING",
                (digest, original),
            )
        return digest

    def parked_original(self, sha256: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT original FROM {self.datastore.schema}.{PARKED_TABLE} WHERE sha256 = %s",
                (sha256,),
            )
            row = curs.fetchone()
        return bytes(row["original"]) if row else None

    def load(self, aggregate_id: UUID) -> list[EventEnvelope]:
        return [
            EventEnvelope.from_bytes(s.state) for s in self.recorder.select_events(aggregate_id)
        ]

    def load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, list[EventEnvelope]]:
        """One round trip for a whole batch's aggregates."""
        out: dict[UUID, list[EventEnvelope]] = {a: [] for a in aggregate_ids}
        if not out:
            return out
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT originator_id, state FROM {self.datastore.schema}.{EVENTS_TABLE}"
                " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version",
                (list(out),),
            )
            for row in curs.fetchall():
                out[UUID(str(row["originator_id"]))].append(EventEnvelope.from_bytes(row["state"]))
        return out

    def commit(
        self, events: Sequence[tuple[str, EventEnvelope]], results: Sequence[CommandResult]
    ) -> None:
        try:
            self.recorder.insert_events([stored_event(c, e) for c, e in events], results=results)
        except IntegrityError as exc:
            raise ConcurrencyError(str(exc)) from exc

    def find_results(self, command_ids: Sequence[str]) -> dict[str, CommandResult]:
        if not command_ids:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT command_id, result FROM {self.datastore.schema}.{RESULTS_TABLE} "
                "WHERE command_id = ANY(%s)",
                (list(command_ids),),
            )
            return {
                r["command_id"]: CommandResult.model_validate(r["result"]) for r in curs.fetchall()
            }

    def notifications(self, after: int, limit: int) -> list[Notification]:
        rows = self.recorder.select_notifications(
            start=after, limit=limit, inclusive_of_start=False
        )
        return [
            Notification(n.id, n.topic, UUID(str(n.originator_id)), n.originator_version, n.state)
            for n in rows
        ]

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0

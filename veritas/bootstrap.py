"""One place that wires settings, the event store, Postgres, the Kafka clients and the clock.
The API, every worker, the CLI and the tests all call bootstrap()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from veritas import kafka
from veritas.eventstore import EventStore, PostgresEventStore, datastore_from_dsn
from veritas.settings import Settings

Clock = Callable[[], datetime]


def read_model_kwargs(
    schema: str, *, durable: bool = True, prepared: bool = False
) -> dict[str, Any]:
    options = f"-c search_path={schema}"
    if not durable:
        # For projection writers only: a database crash may forget the last commits, but each
        # takes its read-model rows and its Kafka positions together, so they are re-applied.
        options += " -c synchronous_commit=off"
    # Writers use no server-side prepared statements: after `veritas replay` renames schemas,
    # each statement must resolve table names again. Readers may (`prepared`): a cached plan
    # keeps reading the renamed-away schema only until replay drops it right after the swap (the
    # drop invalidates the plan, and Postgres re-resolves the names), and that schema held the
    # same data at the swap.
    return {"autocommit": True, "prepare_threshold": 5 if prepared else None, "options": options}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    clock: Clock = utc_now
    _store: EventStore | None = field(default=None, repr=False)

    @cached_property
    def store(self) -> EventStore:
        if self._store is not None:
            return self._store
        store = PostgresEventStore(datastore_from_dsn(self.settings.dsn, self.settings.db_schema))
        store.create_tables()
        return store

    def async_pool(self) -> AsyncConnectionPool:
        """Read-model connections for the API; open it inside the event loop (`await .open()`)."""
        return AsyncConnectionPool(
            self.settings.dsn,
            min_size=1,
            max_size=8,
            open=False,
            timeout=10,
            # A connection that died with a database restart is replaced before it is handed out,
            # instead of failing the first query after the restart.
            check=AsyncConnectionPool.check_connection,
            kwargs=read_model_kwargs(self.settings.read_schema, prepared=True),
        )

    def read_model_connection(
        self, schema: str | None = None, *, durable: bool = True
    ) -> psycopg.Connection:
        return psycopg.connect(
            self.settings.dsn,
            **read_model_kwargs(schema or self.settings.read_schema, durable=durable),
        )

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        return kafka.client_config(self.settings, **extra)

    def close(self) -> None:
        store = self.__dict__.get("store")
        if isinstance(store, PostgresEventStore):
            store.close()


def bootstrap(
    settings: Settings | None = None, *, store: EventStore | None = None, clock: Clock | None = None
) -> Container:
    return Container(settings=settings or Settings(), clock=clock or utc_now, _store=store)

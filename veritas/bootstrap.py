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

from config.settings import Settings
from events.signatures import KeySource, Legacy
from infra import kafka, keys
from infra.anchors import Anchors
from infra.event_keys import EventSigner, PublishedKeys
from infra.postgres.connections import read_model_kwargs
from infra.postgres.eventstore import EventStore, PostgresEventStore, datastore_from_dsn
from infra.signed_store import SigningEventStore

__all__ = ["Container", "bootstrap", "read_model_kwargs", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    clock: Clock = utc_now
    # The Kafka principal of this process's clients (infra/kafka/security.py).
    principal: kafka.Principal = "service"
    _store: EventStore | None = field(default=None, repr=False)

    @cached_property
    def store(self) -> EventStore:
        """The event store; every event committed through it is signed (events.signatures)."""
        if self._store is not None:
            store: EventStore = self._store
        else:
            pg = PostgresEventStore(datastore_from_dsn(self.settings.dsn, self.settings.db_schema))
            pg.create_tables()
            store = pg
        return SigningEventStore(store, self.signer)

    @cached_property
    def signer(self) -> EventSigner:
        keys.ensure_dev_key(self.settings)
        return EventSigner(self.settings)

    @cached_property
    def event_keys(self) -> KeySource:
        """The public keys events are verified with (every key published, retired ones too)."""
        return PublishedKeys(self.settings)

    @cached_property
    def legacy(self) -> Legacy:
        """What vouches for unsigned (v1) history: the signed anchor `veritas init` wrote."""
        return Anchors(self.settings, self.event_keys)

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
        return kafka.client_config(self.settings, principal=self.principal, **extra)

    def close(self) -> None:
        store = self.__dict__.get("store")
        if isinstance(store, SigningEventStore) and isinstance(store.inner, PostgresEventStore):
            store.inner.close()


def bootstrap(
    settings: Settings | None = None,
    *,
    store: EventStore | None = None,
    clock: Clock | None = None,
    principal: kafka.Principal = "service",
) -> Container:
    return Container(
        settings=settings or Settings(), clock=clock or utc_now, principal=principal, _store=store
    )

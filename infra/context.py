"""What the service layer is given to reach the adapters: settings, the event store, read-model
connections and Kafka client configuration. The composition root (veritas.bootstrap.Container)
provides it; code below the entrypoints names this protocol, never the container itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import psycopg

from config.settings import Settings
from events.signatures import KeySource, Legacy
from infra.postgres.eventstore import EventStore


class Infra(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...

    @property
    def store(self) -> EventStore: ...

    @property
    def event_keys(self) -> KeySource: ...

    @property
    def legacy(self) -> Legacy: ...

    def read_model_connection(
        self, schema: str | None = None, *, durable: bool = True
    ) -> psycopg.Connection: ...

    def kafka_config(self, **extra: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...

"""Which faults are transient: a database or broker that is restarting or unreachable. Those are
retried with backoff for as long as it takes; anything else about one message is that message's
own failure (a dead letter), never its partition's."""

from __future__ import annotations

import psycopg
from confluent_kafka import KafkaError, KafkaException
from eventsourcing import persistence

_TRANSIENT_DB = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
    persistence.ConnectionUnavailableError,
)


def transient(exc: BaseException) -> bool:
    if isinstance(exc, (*_TRANSIENT_DB, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, KafkaException):
        err = exc.args[0] if exc.args else None
        return isinstance(err, KafkaError) and err.retriable() and not err.fatal()
    return False

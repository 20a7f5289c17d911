"""Relay: publish every stored event to its context's events topic, exactly once and in
per-aggregate order (the store's notification order is a total order).

Each batch is one Kafka transaction holding the events and the new relay position (the last
notification id, on an internal compacted topic). After a crash, init_transactions() aborts any
half-written batch and the position is read back from the last committed record, so a batch is
either wholly on Kafka with its position, or not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

from confluent_kafka import KafkaException, Producer
from prometheus_client import Counter, Gauge

from infra.kafka import RELAY_POSITION_TOPIC, relay_position, transactional_producer
from infra.kafka.security import RELAY_TRANSACTIONAL_ID
from infra.postgres.eventstore import Notification
from veritas.bootstrap import Container, bootstrap
from workers.base import main, start_worker
from workers.recovery import WATCHDOG, Abort, Fatal, Stopped, txn_call, until_it_works

log = logging.getLogger("veritas.relay")
RELAYED = Counter("veritas_relay_events_total", "Events published to Kafka")
LAG = Gauge("veritas_relay_lag_events", "Stored events not yet on Kafka")


def relay_batch(producer: Producer, notes: list[Notification], timeout_s: float) -> int:
    """Publish stored events and the relay's new position in one Kafka transaction."""
    producer.begin_transaction()
    for n in notes:
        producer.produce(
            n.topic,
            key=str(n.aggregate_id),
            value=n.state,
            headers=[("notification_id", str(n.id).encode())],
        )
    last = notes[-1].id
    producer.produce(RELAY_POSITION_TOPIC, key=b"position", value=str(last).encode())
    txn_call("commit_transaction", producer.commit_transaction, timeout_s, 3 * timeout_s)
    RELAYED.inc(len(notes))
    return last


def make_producer(container: Container) -> Producer:
    return transactional_producer(
        container.settings,
        RELAY_TRANSACTIONAL_ID,
        "relay",
        **{"linger.ms": 1, "compression.type": "lz4"},
    )


def connect(container: Container, stop: threading.Event) -> tuple[Producer, int]:
    """A fresh transactional producer (its init_transactions settles whatever a predecessor left
    open) and the position committed on Kafka: after any failure the truth is re-read, because a
    failed transaction may have reached Kafka or not."""

    def attempt() -> tuple[Producer, int]:
        try:
            with WATCHDOG.guard("relay connect", 90.0):
                return make_producer(container), relay_position(container.settings)
        except KafkaException as exc:
            raise ConnectionError(f"Kafka: {exc}") from exc

    result: tuple[Producer, int] = until_it_works(stop, "relay connect", attempt)
    return result


def run(container: Container) -> None:
    stopper = start_worker(container, "relay")
    stop = stopper.event
    s = container.settings
    store = container.store
    try:
        producer, position = connect(container, stop)
    except Stopped:
        return
    log.info("relay started at notification %d", position)
    lag_checked = 0.0
    while not stopper.stopped:
        try:
            notes = until_it_works(
                stop, "event store", partial(store.notifications, position, s.relay_batch_max)
            )
            if not notes:
                LAG.set(0)
                until_it_works(
                    stop, "event store", lambda: store.wait_for_events(s.relay_idle_wait_s)
                )
                continue
            position = relay_batch(producer, notes, s.kafka_call_timeout_s)
            if time.monotonic() - lag_checked > 1.0:  # a query: not on every batch's path
                LAG.set(max(0, store.max_notification_id() - position))
                lag_checked = time.monotonic()
        except (Abort, Fatal, KafkaException) as exc:
            log.warning("relay transaction failed (%s); re-reading the position from Kafka", exc)
            try:
                producer, position = connect(container, stop)
            except Stopped:
                break
        except Stopped:
            break
    with WATCHDOG.guard("flush", s.kafka_call_timeout_s + 10):
        producer.flush(s.kafka_call_timeout_s)
    log.info("relay stopped at notification %d", position)


if __name__ == "__main__":
    main(lambda: run(bootstrap(principal="relay")))

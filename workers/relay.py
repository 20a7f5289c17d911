"""Relay: publish every stored event to its context's events topic, exactly once and in
per-aggregate order (the store's notification order is a total order).

Each batch is one Kafka transaction holding the events and the new relay position (the last
notification id, on an internal compacted topic). After a crash, init_transactions() aborts any
half-written batch and the position is read back from the last committed record, so a batch is
either wholly on Kafka with its position, or not at all.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from veritas.bootstrap import Container, bootstrap
from veritas.eventstore import EventStore
from veritas.kafka import RELAY_POSITION_TOPIC, transactional_producer
from workers.base import start_worker

log = logging.getLogger("veritas.relay")
RELAYED = Counter("veritas_relay_events_total", "Events published to Kafka")
LAG = Gauge("veritas_relay_lag_events", "Stored events not yet on Kafka")


def read_position(container: Container, timeout_s: float = 30.0) -> int:
    """The last notification id committed to Kafka (0 if none)."""
    consumer = Consumer(
        container.kafka_config(
            **{
                "group.id": "veritas-relay-position",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
    )
    try:
        tp = TopicPartition(RELAY_POSITION_TOPIC, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        back = 64
        while True:
            start = max(low, high - back)
            last = _scan(consumer, start, timeout_s)
            if last is not None or start == low:
                return last or 0
            back *= 8  # only aborted transactions near the end: look further back
    finally:
        consumer.close()


def _scan(consumer: Consumer, start: int, timeout_s: float) -> int | None:
    consumer.assign([TopicPartition(RELAY_POSITION_TOPIC, 0, start)])
    last: int | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if (err := msg.error()) is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return last
            raise RuntimeError(f"reading relay position: {err}")
        last = int(msg.value() or b"0")
    raise TimeoutError("timed out reading the relay position")


def relay_batch(producer: Producer, store: EventStore, position: int, limit: int) -> int:
    notes = store.notifications(position, limit)
    if not notes:
        return position
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
    producer.commit_transaction()
    RELAYED.inc(len(notes))
    return last


def make_producer(container: Container) -> Producer:
    return transactional_producer(
        container.settings, "veritas-relay", **{"linger.ms": 1, "compression.type": "lz4"}
    )


def run(container: Container) -> None:
    stopper = start_worker(container, "relay")
    s = container.settings
    producer = make_producer(container)
    position = read_position(container)
    store = container.store
    log.info("relay started at notification %d", position)
    lag_checked = 0.0
    while not stopper.stopped:
        try:
            new = relay_batch(producer, store, position, s.relay_batch_max)
        except Exception:
            # A failed transaction may have reached Kafka or not: re-read the truth.
            log.exception("relay batch failed; recovering position")
            time.sleep(1.0)
            producer = make_producer(container)
            position = read_position(container)
            continue
        if new == position:
            LAG.set(0)
            store.wait_for_events(s.relay_idle_wait_s)
        else:
            position = new
            if time.monotonic() - lag_checked > 1.0:  # a query: not on every batch's path
                LAG.set(max(0, store.max_notification_id() - position))
                lag_checked = time.monotonic()
    producer.flush(10)
    log.info("relay stopped at notification %d", position)


if __name__ == "__main__":
    run(bootstrap())

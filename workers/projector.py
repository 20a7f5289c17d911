"""Projector: consume the events topics and events.results into the Postgres read models.

Exactly once: the consumed offsets are written in the same Postgres transaction as the read-model
changes, and on every partition assignment the consumer seeks to the positions stored there, never
to Kafka's committed offsets.
"""

from __future__ import annotations

import contextlib
import logging

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from prometheus_client import Gauge

from infra.faults import transient
from infra.kafka import where
from projections.apply import (
    EVENT_TOPICS,
    RESULTS_TOPIC,
    apply_batch,
    load_generation,
    load_positions,
)
from projections.believe import Trust
from projections.schema import migrate
from veritas.bootstrap import Container, bootstrap
from workers.base import consume_batch, main, start_worker
from workers.recovery import Stopped, until_it_works

log = logging.getLogger("veritas.projector")
LAG = Gauge(
    "veritas_projection_lag_records", "Records on Kafka not yet projected", ["topic", "partition"]
)


class Projector:
    def __init__(self, container: Container, group_id: str = "veritas-projector") -> None:
        self.container = container
        self.conn = container.read_model_connection(durable=False)
        migrate(self.conn, container.settings.read_schema)
        self.positions = load_positions(self.conn)
        self.generation = load_generation(self.conn)
        self.previous = 0  # size of the last batch
        self.trust = Trust(container.event_keys, container.legacy)
        self.consumer = Consumer(
            container.kafka_config(
                **{
                    "group.id": group_id,
                    "group.instance.id": f"{group_id}-0",
                    # Static membership (one projector): a restart takes its partitions back at
                    # once instead of waiting out the session of its killed predecessor.
                    "session.timeout.ms": container.settings.kafka_session_timeout_ms,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                }
            )
        )
        self.consumer.subscribe([*EVENT_TOPICS, RESULTS_TOPIC], on_assign=self._on_assign)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.positions = load_positions(self.conn)
        for tp in partitions:
            stored = self.positions.get((tp.topic, tp.partition))
            tp.offset = stored + 1 if stored is not None else OFFSET_BEGINNING
        consumer.assign(partitions)

    def _resync(self) -> None:
        """A replay swapped the read models, or caught the live ones up without swapping: continue
        from the positions stored there."""
        self.positions = load_positions(self.conn)
        self.generation = load_generation(self.conn)
        for tp in self.consumer.assignment():
            stored = self.positions.get((tp.topic, tp.partition))
            offset = stored + 1 if stored is not None else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        log.info(
            "read models changed by a replay (generation %d); resumed from their positions",
            self.generation,
        )

    def step(self, max_records: int, timeout_s: float) -> int:
        msgs = consume_batch(self.consumer, max_records, timeout_s, self.previous)
        self.previous = len(msgs)
        if not msgs:
            return 0
        with self.conn.transaction():
            swapped = load_generation(self.conn, lock=True) != self.generation
            applied = {} if swapped else apply_batch(self.conn, msgs, self.positions, self.trust)
        if swapped:
            self._resync()  # this batch is dropped: it is re-read from the new positions
            return 0
        self.positions.update(applied)
        self._report_lag(msgs)
        return len(msgs)

    def _report_lag(self, msgs: list[Message]) -> None:
        for m in msgs[-1:]:
            topic, partition, offset = where(m)
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
            LAG.labels(topic, str(partition)).set(max(0, high - offset - 1))

    def close(self) -> None:
        self.consumer.close()
        self.conn.close()


def run(container: Container) -> None:
    stopper = start_worker(container, "projector")
    stop = stopper.event
    try:
        projector = until_it_works(stop, "projector start", lambda: Projector(container))
    except Stopped:
        return
    log.info("projector started")
    while not stopper.stopped:
        try:
            projector.step(container.settings.projector_batch_max, 0.2)
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("database unavailable (%s); reconnecting", exc)
            with contextlib.suppress(Exception):
                projector.close()
            try:
                projector = until_it_works(stop, "projector start", lambda: Projector(container))
            except Stopped:
                return
    projector.close()
    log.info("projector stopped")


if __name__ == "__main__":
    main(lambda: run(bootstrap()))

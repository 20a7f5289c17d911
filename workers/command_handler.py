"""Command handler worker: consume command topics, run each batch to its outcomes, then publish
results and dead letters and commit the consumed offsets in one Kafka transaction.

Ordering of durability: the events and results are committed to Postgres first; the Kafka
transaction (results + dead letters + offsets) second. A crash between the two re-delivers the
batch, and the results table answers every repeat with the stored result, so nothing is lost or
doubled.

Pipelining: a batch's Kafka transaction commits on a helper thread while the next batch runs
against Postgres; the next transaction begins only once that commit is done. If a commit fails,
both batches are re-read from the failed one's first offsets (Postgres answers the repeats).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Histogram

from commands.catalog import COMMAND_TOPICS
from commands.decoding import DeadLetter
from commands.results import CommandResult
from commands.service import Incoming, Outcome, process_batch
from veritas import logs
from veritas.bootstrap import Container, bootstrap
from veritas.kafka import headers, transactional_producer, where
from workers.base import consume_batch, handler_name, start_worker

log = logging.getLogger("veritas.command_handler")
OUTCOMES = Counter("veritas_commands_total", "Command outcomes", ["status", "reason_code"])
BATCH_SECONDS = Histogram("veritas_command_batch_seconds", "Time to process one batch")
BATCH_SIZE = Histogram(
    "veritas_command_batch_size", "Commands per batch", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)
COMMIT_SECONDS = Histogram(
    "veritas_command_commit_seconds", "Offsets and commit of one batch's Kafka transaction"
)


def _auth_header(msg: Message) -> str | None:
    for key, value in headers(msg):
        if key.lower() == "authorization":
            return value.decode("utf-8", "replace")
    return None


def _dlq_headers(msg: Message, dead: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    # The authorization header is a secret: it is never copied to the dead-letter topic.
    kept = [(k, v) for k, v in headers(msg) if k.lower() != "authorization"]
    return [
        *kept,
        ("dlq.reason", dead.reason.encode()),
        ("dlq.detail", dead.detail[:1000].encode()),
        ("dlq.source", "/".join(str(x) for x in where(msg)).encode()),
    ]


def _next_offsets(msgs: list[Message]) -> list[TopicPartition]:
    nxt: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = where(m)
        nxt[(topic, partition)] = max(nxt.get((topic, partition), 0), offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in nxt.items()]


def _first_offsets(msgs: list[Message]) -> list[TopicPartition]:
    first: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = where(m)
        first.setdefault((topic, partition), offset)
    return [TopicPartition(t, p, o) for (t, p), o in first.items()]


def publish(producer: Producer, msgs: list[Message], outcomes: list[Outcome]) -> None:
    """Begin a transaction with the batch's results and dead letters (Committer ends it)."""
    producer.begin_transaction()
    for msg, outcome in zip(msgs, outcomes, strict=True):
        if isinstance(outcome, CommandResult):
            producer.produce("commands.results", key=outcome.command_id, value=outcome.to_bytes())
            OUTCOMES.labels(outcome.status, outcome.reason_code or "").inc()
            if outcome.status == "rejected":
                with logs.correlated(outcome.command_id):
                    log.info("rejected %s: %s", outcome.reason_code, outcome.sub_code or "")
        else:
            log.warning("dead-lettered %s from %s", outcome.reason, "/".join(map(str, where(msg))))
            producer.produce(
                "commands.dlq", key=msg.key(), value=msg.value(), headers=_dlq_headers(msg, outcome)
            )
            OUTCOMES.labels("dead_lettered", outcome.reason).inc()


class Committer:
    """Adds the consumed offsets to a transaction and commits it on a helper thread, one at a
    time (both are round trips to the coordinator; the client releases the GIL meanwhile)."""

    def __init__(self, producer: Producer, consumer: Consumer) -> None:
        self.producer = producer
        self.consumer = consumer
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="txn-commit")
        self.pending: Future[None] | None = None
        self.pending_msgs: list[Message] = []
        self.failed: list[Message] = []

    def start(self, msgs: list[Message]) -> None:
        # The group metadata (generation, member) is taken now: a rebalance since fences the commit.
        group = self.consumer.consumer_group_metadata()
        self.pending = self.pool.submit(self._commit, _next_offsets(msgs), group)
        self.pending_msgs = msgs

    def _commit(self, offsets: list[TopicPartition], group: object) -> None:
        with COMMIT_SECONDS.time():
            self.producer.send_offsets_to_transaction(offsets, group)
            self.producer.commit_transaction()

    def wait(self) -> None:
        """Wait for the pending commit; raise its error (its messages go to `failed`)."""
        pending, msgs = self.pending, self.pending_msgs
        self.pending, self.pending_msgs = None, []
        if pending is None:
            return
        try:
            pending.result()
        except Exception:
            self.failed = msgs
            raise

    def drain(self) -> list[Message]:
        """Wait for any commit in flight; the messages whose commit failed (to be re-read)."""
        with contextlib.suppress(Exception):
            self.wait()
        failed, self.failed = self.failed, []
        return failed


def run(container: Container, instance: int = 0) -> None:
    s = container.settings
    stopper = start_worker(container, handler_name(instance))
    tid = f"veritas-command-handler-{instance}"
    consumer = Consumer(
        container.kafka_config(
            **{
                "group.id": "veritas-command-handler",
                # Static membership: a restarted handler takes its partitions back at once.
                "group.instance.id": tid,
                "session.timeout.ms": 10000,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
    )
    producer = transactional_producer(container.settings, tid, **{"linger.ms": 2})
    consumer.subscribe(list(COMMAND_TOPICS.values()))
    store = container.store
    log.info("command handler %d started", instance)
    msgs: list[Message] = []
    committer = Committer(producer, consumer)
    while not stopper.stopped:
        msgs = consume_batch(consumer, s.handler_batch_max, 0.2, len(msgs))
        try:
            if not msgs:
                committer.wait()  # idle: finish the last commit now
                continue
            BATCH_SIZE.observe(len(msgs))
            with BATCH_SECONDS.time():
                items = [Incoming(m.value(), _auth_header(m), m.topic()) for m in msgs]
                outcomes = process_batch(items, store=store, settings=s, clock=container.clock)
                committer.wait()  # the next transaction begins only after the previous commit
                publish(producer, msgs, outcomes)
                committer.start(msgs)
        except (KafkaException, OSError, Exception) as exc:
            _recover(exc, producer, consumer, [*committer.drain(), *msgs])
    committer.drain()
    consumer.close()
    producer.flush(10)
    log.info("command handler stopped")


def _recover(exc: Exception, producer: Producer, consumer: Consumer, msgs: list[Message]) -> None:
    """Abort, and re-read every message whose outcome did not reach Kafka."""
    log.error("batch failed; it will be retried: %s", type(exc).__name__, exc_info=exc)
    with contextlib.suppress(KafkaException):
        producer.abort_transaction(10)
    for tp in _first_offsets(msgs):
        consumer.seek(tp)
    time.sleep(1.0)


if __name__ == "__main__":
    run(bootstrap(), int(sys.argv[1]) if len(sys.argv) > 1 else 0)

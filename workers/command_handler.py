"""Command handler worker: consume command topics, run each batch to its outcomes, then publish
results and dead letters and commit the consumed offsets in one Kafka transaction.

Ordering of durability: the events and results are committed to Postgres first; the Kafka
transaction (results + dead letters + offsets) second. A crash between the two re-delivers the
batch, and the results table answers every repeat with the stored result, so nothing is lost or
doubled.

Pipelining: a batch's Kafka transaction commits on a helper thread while the next batch runs
against Postgres; the next transaction begins only once that commit is done. If a commit fails,
both batches are re-read from the failed one's first offsets (Postgres answers the repeats).

Faults: a database outage makes the batch wait and retry with backoff (it is never skipped); an
abortable Kafka error aborts the transaction and re-reads the batch; a fatal one ends the process
(EXIT_FATAL) for the supervisor to restart. A message never stops its partition: whatever fails on
one message alone becomes its own dead letter (commands.service).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Histogram

from commands.catalog import COMMAND_TOPICS
from commands.decoding import DeadLetter
from commands.service import Incoming, Outcome, process_batch
from config.services import handler_name
from config.settings import Settings
from events.results import CommandResult
from infra import logs
from infra.kafka import headers, transactional_producer, where
from infra.kafka.membership import Membership
from infra.postgres.eventstore import EventStore
from veritas.bootstrap import Container, bootstrap
from workers.base import consume_batch, main, start_worker
from workers.recovery import WATCHDOG, Abort, Fatal, Stopped, abort, txn_call, until_it_works

log = logging.getLogger("veritas.command_handler")
OUTCOMES = Counter("veritas_commands_total", "Command outcomes", ["status", "reason_code"])
BATCH_SECONDS = Histogram("veritas_command_batch_seconds", "Time to process one batch")
BATCH_SIZE = Histogram(
    "veritas_command_batch_size", "Commands per batch", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)
COMMIT_SECONDS = Histogram(
    "veritas_command_commit_seconds", "Offsets and commit of one batch's Kafka transaction"
)
ABORTS = Counter("veritas_command_aborts_total", "Kafka transactions aborted and re-read")
GROUP = "veritas-command-handler"


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


def dead_letter_value(
    store: EventStore, s: Settings, msg: Message
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The dead letter's value: the original bytes, whole. An original too large for the topic is
    kept in Postgres (idempotently, by digest) and the dead letter names it."""
    value = msg.value()
    if value is None or len(value) <= s.dlq_max_bytes:
        return value, []
    digest = store.park_original(value)
    return b"", [
        ("dlq.original", f"postgres:{store.parked_table}/{digest}".encode()),
        ("dlq.original_bytes", str(len(value)).encode()),
    ]


Parked = dict[int, tuple[bytes | None, list[tuple[str, bytes]]]]


def park_oversized(
    store: EventStore, s: Settings, msgs: list[Message], outcomes: list[Outcome]
) -> Parked:
    """The dead letters' values, with any original too large for the topic parked in Postgres."""
    return {
        i: dead_letter_value(store, s, m)
        for i, (m, o) in enumerate(zip(msgs, outcomes, strict=True))
        if isinstance(o, DeadLetter)
    }


def publish(
    producer: Producer, msgs: list[Message], outcomes: list[Outcome], parked: Parked
) -> None:
    """Begin a transaction with the batch's results and dead letters (Committer ends it)."""
    try:
        producer.begin_transaction()
    except KafkaException as exc:
        raise Fatal(f"begin_transaction: {exc}") from exc
    for i, (msg, outcome) in enumerate(zip(msgs, outcomes, strict=True)):
        if isinstance(outcome, CommandResult):
            producer.produce("events.results", key=outcome.command_id, value=outcome.to_bytes())
            OUTCOMES.labels(outcome.status, outcome.reason_code or "").inc()
            if outcome.status == "rejected":
                with logs.correlated(outcome.command_id):
                    log.info("rejected %s: %s", outcome.reason_code, outcome.sub_code or "")
        else:
            log.warning("dead-lettered %s from %s", outcome.reason, "/".join(map(str, where(msg))))
            value, extra = parked[i]
            producer.produce(
                "commands.dlq",
                key=msg.key(),
                value=value,
                headers=[*_dlq_headers(msg, outcome), *extra],
            )
            OUTCOMES.labels("dead_lettered", outcome.reason).inc()


class Committer:
    """Adds the consumed offsets to a transaction and commits it on a helper thread, one at a
    time (both are round trips to the coordinator; the client releases the GIL meanwhile)."""

    def __init__(self, producer: Producer, s: Settings) -> None:
        self.producer = producer
        self.timeout_s = s.kafka_call_timeout_s
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="txn-commit")
        self.pending: Future[None] | None = None
        self.pending_msgs: list[Message] = []
        self.failed: list[Message] = []

    def start(self, msgs: list[Message], group: object) -> None:
        # `group` was taken when the batch was read: a rebalance since fences the commit.
        self.pending = self.pool.submit(self._commit, _next_offsets(msgs), group)
        self.pending_msgs = msgs

    def _commit(self, offsets: list[TopicPartition], group: object) -> None:
        t = self.timeout_s
        with COMMIT_SECONDS.time():
            txn_call(
                "send_offsets_to_transaction",
                lambda timeout: self.producer.send_offsets_to_transaction(offsets, group, timeout),
                t,
                3 * t,
            )
            txn_call("commit_transaction", self.producer.commit_transaction, t, 3 * t)

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
        """Wait for any commit in flight; the messages whose commit failed (to be re-read). A
        fatal error is not swallowed."""
        with contextlib.suppress(Abort):
            self.wait()
        failed, self.failed = self.failed, []
        return failed


def _consumer(container: Container) -> Consumer:
    s = container.settings
    return Consumer(
        container.kafka_config(
            **{
                "group.id": GROUP,
                # Dynamic membership: close() on SIGTERM leaves the group at once, and a killed
                # handler's partitions move after the session timeout.
                "session.timeout.ms": s.kafka_session_timeout_ms,
                "heartbeat.interval.ms": max(500, s.kafka_session_timeout_ms // 4),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
    )


def _producer(container: Container, tid: str) -> Producer:
    s = container.settings
    with WATCHDOG.guard("init_transactions", 90.0):
        return _new_producer(s, tid)


def _new_producer(s: Settings, tid: str) -> Producer:
    return transactional_producer(
        s,
        tid,
        "service",
        **{
            "linger.ms": 2,
            "compression.type": "lz4",
            # A dead letter keeps its original whole: up to dlq_max_bytes, plus its headers.
            "message.max.bytes": s.dlq_max_bytes + 1024 * 1024,
        },
    )


def run(container: Container, instance: int = 0) -> None:
    s = container.settings
    stopper = start_worker(container, handler_name(instance))
    stop = stopper.event
    tid = f"veritas-command-handler-{instance}"
    producer = until_it_works(stop, "transactional producer", lambda: _producer(container, tid))
    consumer = _consumer(container)
    committer = Committer(producer, s)
    # A revoked partition's commit in flight ends first; whatever failed is read again from the
    # committed offsets (by this consumer or the partition's next owner).
    member = Membership(consumer, on_revoke=committer.drain)
    member.subscribe(list(COMMAND_TOPICS.values()))
    store = container.store
    log.info("command handler %d started", instance)
    msgs: list[Message] = []
    while not stopper.stopped:
        since = member.epoch
        msgs = consume_batch(consumer, s.handler_batch_max, 0.2, len(msgs))
        group = member.metadata(since)
        try:
            if not msgs:
                committer.wait()  # idle: finish the last commit now
                continue
            if group is None:
                _drop(member, msgs, s, since)
                continue
            BATCH_SIZE.observe(len(msgs))
            with BATCH_SECONDS.time():
                items = [Incoming(m.value(), _auth_header(m), m.topic()) for m in msgs]
                outcomes = until_it_works(
                    stop,
                    "command batch",
                    partial(process_batch, items, store=store, settings=s, clock=container.clock),
                )
                parked = until_it_works(
                    stop, "park originals", partial(park_oversized, store, s, msgs, outcomes)
                )
                committer.wait()  # the next transaction begins only after the previous commit
                publish(producer, msgs, outcomes, parked)
                committer.start(msgs, group)
        except Abort as exc:
            _rewind(exc, producer, consumer, s, [*committer.drain(), *msgs])
        except Stopped:
            break
    _close(committer, consumer, producer, s)
    log.info("command handler stopped")


def _close(committer: Committer, consumer: Consumer, producer: Producer, s: Settings) -> None:
    with contextlib.suppress(Exception):
        committer.drain()
    with contextlib.suppress(Exception):
        abort(producer, s.kafka_call_timeout_s, s.kafka_call_timeout_s)
    with WATCHDOG.guard("close", 3 * s.kafka_call_timeout_s + 10):
        consumer.close()  # leaves the group: its partitions move to the other instances now
        producer.flush(s.kafka_call_timeout_s)


def _drop(member: Membership, msgs: list[Message], s: Settings, since: int) -> None:
    """A batch read while not a member, or across a rebalance, is not handled here: its
    partitions' owner reads it again from the committed offsets."""
    log.info("dropped a batch of %d read outside this consumer's current assignment", len(msgs))
    if member.rebalanced(since):
        try:
            member.back_to_committed(s.kafka_call_timeout_s)
        except KafkaException as exc:  # a restart reads from the committed offsets too
            raise Fatal(f"committed offsets: {exc}") from exc


def _rewind(
    exc: Exception, producer: Producer, consumer: Consumer, s: Settings, msgs: list[Message]
) -> None:
    """Abort, and re-read every message whose outcome did not reach Kafka."""
    ABORTS.inc()
    log.warning("transaction aborted; its batch will be re-read: %s", exc)
    abort(producer, s.kafka_call_timeout_s, 3 * s.kafka_call_timeout_s)
    for tp in _first_offsets(msgs):
        with contextlib.suppress(
            KafkaException
        ):  # a partition revoked meanwhile: its new owner reads it
            consumer.seek(tp)


if __name__ == "__main__":
    main(lambda: run(bootstrap(), int(sys.argv[1]) if len(sys.argv) > 1 else 0))

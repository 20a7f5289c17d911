"""The Kafka path: ``inference.requests`` -> model -> ``inference.results`` (no torch, no Ray).

One ``IngressLoop`` runs on a thread inside each replica (or in any plain process, which is how
the bench's baseline runs the same code without Ray). All loops share one consumer group, so the
path scales by partitions, and each loop:

1. takes up to ``max_batch`` requests off the topic, waiting at most ``batch_wait_s`` for them;
2. answers them against the snapshot of what is served, read once (``serving.batching``);
3. while the previous transaction is still committing, goes back to 1 and keeps the answers
   (group commit, up to ``max_txn_rows``); otherwise produces every kept result (input order,
   key = request id) and hands the consumed offsets to a helper thread, which commits them.

So the commit of one transaction overlaps the consume and forward pass of the next batches, and
a transaction grows with the load: its fixed cost (4-5 broker round trips, 14-17 ms on this
loaded 2-core machine) is paid per transaction, not per ``max_batch`` rows.

Delivery (``delivery``):

* ``exactly_once`` (default): each transaction holds its batches' results and their
  consumed offsets (``send_offsets_to_transaction`` with the group's metadata, KIP-447). A
  replica killed mid-batch leaves an open transaction that is aborted (by the successor's
  ``init_transactions`` on the same ``transactional_id``, or by the broker after
  ``transaction_timeout_ms``); its requests are read again from the committed offsets. A
  ``read_committed`` reader of the results sees exactly one result per request. An abortable
  error aborts the transaction and rewinds to its first offsets; a fatal one (fenced) ends the loop,
  ``healthy`` turns false and Serve replaces the replica.
* ``at_least_once``: results are flushed, then the offsets committed. A kill repeats the results
  of at most the batches in flight; a repeat has the same ``request_id`` (readers keep the first).

On a rebalance the revoked partitions' commit is awaited and answers not yet produced are
dropped: the partitions' next owner reads those requests again from the committed offsets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from infra.kafka.membership import Membership
from serving import metrics
from serving.batching import Snapshot, answer_messages
from serving.commit import Batch, Committer, Fatal, Pending, offsets_of
from serving.protocol import dumps

log = logging.getLogger("serving.ingress")
Delivery = Literal["exactly_once", "at_least_once"]


@dataclass(frozen=True)
class IngressConfig:
    bootstrap_servers: str
    requests_topic: str = "inference.requests"
    results_topic: str = "inference.results"
    group_id: str = "veritas-serving"
    transactional_id: str = "veritas-serving-0"
    delivery: Delivery = "exactly_once"
    max_batch: int = 500
    batch_wait_s: float = 0.005
    max_txn_rows: int = 5000  # answered rows that may wait for the previous commit
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 6_000
    stats_interval_ms: int = 5_000
    call_timeout_s: float = 30.0
    client: dict[str, str] = field(default_factory=dict)  # extra librdkafka settings (security)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> IngressConfig:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ingress setting(s) {sorted(unknown)}")
        cfg = cls(**raw)
        if cfg.delivery not in ("exactly_once", "at_least_once"):
            raise ValueError(f"delivery must be exactly_once or at_least_once: {cfg.delivery!r}")
        if cfg.max_batch < 1 or cfg.batch_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and batch_wait_s >= 0")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IngressLoop:
    """The consume -> answer -> produce -> commit loop on its own thread."""

    def __init__(self, cfg: IngressConfig, snapshot: Callable[[], Snapshot]) -> None:
        self.cfg = cfg
        self._snapshot = snapshot
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self._pending = Pending()
        self.consumed = 0
        self.batches = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serving-ingress", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def status(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "error": self.error,
            "consumed": self.consumed,
            "batches": self.batches,
            "group_id": self.cfg.group_id,
            "transactional_id": self.cfg.transactional_id,
            "delivery": self.cfg.delivery,
        }

    def _clients(self) -> tuple[Consumer, Producer]:
        base = {"bootstrap.servers": self.cfg.bootstrap_servers, **self.cfg.client}
        consumer = Consumer(
            {
                **base,
                "group.id": self.cfg.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": self.cfg.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.cfg.session_timeout_ms // 4),
                "statistics.interval.ms": self.cfg.stats_interval_ms,
                "stats_cb": _record_lag,
            }
        )
        extra: dict[str, Any] = {"enable.idempotence": True, "linger.ms": 1}
        if self.cfg.delivery == "exactly_once":
            extra.update(
                {
                    "transactional.id": self.cfg.transactional_id,
                    "transaction.timeout.ms": self.cfg.transaction_timeout_ms,
                    # Back-to-back transactions meet CONCURRENT_TRANSACTIONS while the previous
                    # commit's markers are written: retry after 2 ms, not librdkafka's 100 ms.
                    "retry.backoff.ms": 2,
                    "retry.backoff.max.ms": 10,
                }
            )
        producer = Producer({**base, **extra})
        if self.cfg.delivery == "exactly_once":
            producer.init_transactions(self.cfg.call_timeout_s)
        return consumer, producer

    def _run(self) -> None:
        try:
            consumer, producer = self._clients()
        except KafkaException as exc:
            self.error = f"cannot start the Kafka clients: {exc}"
            log.error(self.error)
            return
        committer = Committer(self.cfg, producer, consumer)

        def revoked() -> None:
            # Commit (or abort) before the partitions go to another member, and drop answers not
            # yet produced: the partitions' next owner reads them again from the committed offsets.
            committer.wait()
            self._pending = Pending()

        member = Membership(consumer, on_revoke=revoked)
        member.subscribe([self.cfg.requests_topic])
        try:
            self._loop(consumer, producer, committer, member)
        except (Fatal, KafkaException) as exc:
            self.error = f"ingress stopped: {exc}"
            log.error(self.error)
        finally:
            committer.wait()
            committer.close()
            consumer.close()
            producer.flush(5.0)

    def _loop(
        self, consumer: Consumer, producer: Producer, committer: Committer, member: Membership
    ) -> None:
        while not self._stop.is_set():
            since = member.epoch
            msgs = consumer.consume(self.cfg.max_batch, self.cfg.batch_wait_s)
            group = member.metadata(since)
            good = [m for m in msgs if m.error() is None]
            if good and group is None:  # read outside the current assignment: its owner reads it
                if member.rebalanced(since):
                    member.back_to_committed(self.cfg.call_timeout_s)
                good = []
            for m in msgs:
                err = m.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    if err.fatal():
                        raise Fatal(str(err))
                    log.warning("consume error: %s", err)
            if good:
                started = time.perf_counter()
                outcome = answer_messages(
                    self._snapshot(), [(m.key(), m.value()) for m in good], started
                )
                self._pending.add(offsets_of(good), outcome.keys, outcome.answers, group)
                self.batches += 1
            # Group commit: while the previous transaction is still committing, answered batches
            # wait here (up to max_txn_rows) and go out together in the next one.
            pending = self._pending
            if not pending.rows:
                if not committer.busy():
                    self._rewind(consumer, committer.wait(), None)
                continue
            if committer.busy() and good and pending.rows < self.cfg.max_txn_rows:
                continue
            failed = committer.wait()
            if failed is not None:
                self._rewind(consumer, failed, pending.batch)
                self._pending = Pending()
                continue
            self._ship(producer, committer, pending)
            self._pending = Pending()

    def _ship(self, producer: Producer, committer: Committer, pending: Pending) -> None:
        if self.cfg.delivery == "exactly_once":
            producer.begin_transaction()
        topic = self.cfg.results_topic
        for key, ans in zip(pending.keys, pending.answers, strict=True):
            _produce(producer, topic, key or str(ans.get("request_id") or "").encode(), ans)
        producer.poll(0)
        metrics.TXN_ROWS.observe(pending.rows)
        committer.submit(pending.batch, pending.group)
        self.consumed += pending.rows

    def _rewind(self, consumer: Consumer, failed: Batch | None, current: Batch | None) -> None:
        if failed is None:
            return
        firsts = dict(failed.firsts)
        for tp, off in (current.firsts if current else {}).items():
            firsts[tp] = min(firsts.get(tp, off), off)
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for (t, p), off in firsts.items():
            if (t, p) in assigned:
                consumer.seek(TopicPartition(t, p, off))


def _produce(producer: Producer, topic: str, key: bytes, answer: dict[str, Any]) -> None:
    value = dumps(answer)
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.005)


def _record_lag(stats_json: str) -> None:
    try:
        stats = orjson.loads(stats_json)
        for topic, t in stats.get("topics", {}).items():
            for part, p in t.get("partitions", {}).items():
                # consumer_lag needs the committed offset, unknown to librdkafka when offsets go
                # through transactions: the lag from the consumed position is what is reported.
                lag = p.get("consumer_lag_stored", -1)
                lag = lag if lag >= 0 else p.get("consumer_lag", -1)
                if part != "-1" and lag >= 0:
                    metrics.LAG.labels(topic, part).set(lag)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        pass

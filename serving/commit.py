"""Committing what the Kafka ingress answered (no torch, no Ray): ``Batch`` offsets, ``Pending``
answers not yet produced, and the ``Committer`` that ends each batch's Kafka transaction (or, with
at-least-once delivery, flushes the results and commits the offsets) on a helper thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from serving import metrics

log = logging.getLogger("serving.ingress")


class CommitSettings(Protocol):
    @property
    def delivery(self) -> str: ...
    @property
    def call_timeout_s(self) -> float: ...


class Fatal(Exception):
    """The loop cannot go on with these clients (fenced, or a fatal client error)."""


@dataclass
class Batch:
    offsets: dict[tuple[str, int], int]  # next offset to read, per partition
    firsts: dict[tuple[str, int], int]  # first offset of the batch, per partition
    rows: int


def offsets_of(messages: list[Message]) -> Batch:
    offsets: dict[tuple[str, int], int] = {}
    firsts: dict[tuple[str, int], int] = {}
    for m in messages:
        tp, off = (str(m.topic()), int(m.partition() or 0)), int(m.offset() or 0)
        offsets[tp] = max(offsets.get(tp, -1), off + 1)
        firsts[tp] = min(firsts.get(tp, off), off)
    return Batch(offsets, firsts, len(messages))


class Committer:
    """Commits one batch at a time on a helper thread; ``wait`` gives back a failed batch."""

    def __init__(self, cfg: CommitSettings, producer: Producer, consumer: Consumer) -> None:
        self.cfg, self.producer, self.consumer = cfg, producer, consumer
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="serving-commit")
        self._pending: tuple[Future[None], Batch] | None = None

    def submit(self, batch: Batch, group: object) -> None:
        # `group` was taken when the batch's first records were read: a rebalance since fences it.
        self._pending = (self._pool.submit(self._commit, batch, group), batch)

    def busy(self) -> bool:
        return self._pending is not None and not self._pending[0].done()

    def wait(self) -> Batch | None:
        """Block until the last commit is done; the batch when it was aborted, else None."""
        if self._pending is None:
            return None
        future, batch = self._pending
        self._pending = None
        try:
            future.result()
        except KafkaException as exc:
            metrics.ABORTS.inc()
            log.warning("batch of %d aborted, to be read again: %s", batch.rows, exc)
            return batch
        return None

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _commit(self, batch: Batch, group: Any) -> None:
        started = time.perf_counter()
        tps = [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()]
        t = self.cfg.call_timeout_s
        if self.cfg.delivery == "at_least_once":
            if self.producer.flush(t) > 0:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "results not delivered"))
            self.consumer.commit(offsets=tps, asynchronous=False)
        else:
            try:
                _retrying(lambda: self.producer.send_offsets_to_transaction(tps, group, t))
                _retrying(lambda: self.producer.commit_transaction(t))
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.fatal():
                    raise Fatal(str(err)) from exc
                self.producer.abort_transaction(t)
                raise
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)


def _retrying(call: Callable[[], None], attempts: int = 5) -> None:
    for i in range(attempts):
        try:
            call()
            return
        except KafkaException as exc:
            err = exc.args[0]
            if not (isinstance(err, KafkaError) and err.retriable()) or i == attempts - 1:
                raise
            time.sleep(0.01 * (i + 1))


class Pending:
    """Answered batches not yet produced: their results and merged offsets."""

    def __init__(self) -> None:
        self.batch = Batch({}, {}, 0)
        self.keys: list[bytes | None] = []
        self.answers: list[dict[str, Any]] = []
        self.group: object = None

    @property
    def rows(self) -> int:
        return self.batch.rows

    def add(
        self, batch: Batch, keys: list[bytes | None], answers: list[dict[str, Any]], group: object
    ) -> None:
        if self.group is None:
            self.group = group
        for tp, off in batch.offsets.items():
            self.batch.offsets[tp] = max(self.batch.offsets.get(tp, off), off)
        for tp, off in batch.firsts.items():
            self.batch.firsts[tp] = min(self.batch.firsts.get(tp, off), off)
        self.batch.rows += batch.rows
        self.keys += keys
        self.answers += answers

"""A consumer's group membership, as seen by a loop that commits offsets in Kafka transactions.

KIP-447 fences a zombie's offset commit by the member and generation it is sent with. Those must
be the ones the batch was read under: taken later, after a pause past the session timeout, they
can be a new generation's (the client rejoins on its own), and the stale batch's commit passes
while the partition's new owner reads the same records again. So the metadata is taken as the
batch is read; rebalance callbacks make a rejoin wait for this loop; a batch read while not a
member is dropped, and one read across a rebalance (its callbacks run inside consume) is dropped
and its partitions go back to their committed offsets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

log = logging.getLogger("veritas.kafka.membership")


class Membership:
    def __init__(self, consumer: Consumer, on_revoke: Callable[[], object] = lambda: None) -> None:
        self.consumer = consumer
        self.epoch = 0
        self._on_revoke = on_revoke

    def subscribe(self, topics: list[str]) -> None:
        self.consumer.subscribe(
            topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.epoch += 1

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The commit in flight ends before the partitions go: their next owner reads from the
        # offsets it leaves.
        self.epoch += 1
        self._on_revoke()

    def metadata(self, since: int) -> object | None:
        """The group metadata to commit a batch read since epoch `since` under, or None when the
        batch must be dropped (a rebalance came between, or this consumer is not a member)."""
        group: object = self.consumer.consumer_group_metadata()
        if self.epoch != since or not self.consumer.memberid():
            return None
        return group

    def rebalanced(self, since: int) -> bool:
        return self.epoch != since

    def back_to_committed(self, timeout_s: float) -> None:
        """Put each assigned partition back at its committed offset (the earliest without one)."""
        assigned = self.consumer.assignment()
        if not assigned:
            return
        for tp in self.consumer.committed(assigned, timeout=timeout_s):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            with contextlib.suppress(KafkaException):  # revoked meanwhile: its new owner reads it
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        log.info(
            "rebalanced mid-batch: %d partitions back at their committed offsets", len(assigned)
        )

"""Membership on the real broker: a batch read across a rebalance goes back to the committed
offsets, a consumer that lost its membership is given no metadata to commit under, and a commit
under the metadata its batch was read with is fenced once that membership is gone."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from config.settings import Settings
from infra.kafka.membership import Membership
from tests import serving_support as support
from tests.helpers import kafka_conf

pytestmark = pytest.mark.kafka


def _consume(c: Consumer, timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msgs = [m for m in c.consume(10, 0.5) if m.error() is None]
        if msgs:
            return [int(m.offset() or 0) for m in msgs]
    return []


def test_a_rebalanced_batch_is_read_again_and_a_lost_member_gets_no_metadata(
    infra: Settings,
) -> None:
    tag = uuid.uuid4().hex[:6]
    topic, group = f"member.{tag}", f"member-{tag}"
    support.create_topics(infra.kafka_bootstrap_servers, {topic: 1})
    p = Producer(kafka_conf(infra))
    for i in range(5):
        p.produce(topic, f"m{i}".encode())
    assert p.flush(10) == 0
    c = Consumer(
        kafka_conf(
            infra,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "max.poll.interval.ms": 6000,
            },
        )
    )
    member = Membership(c)
    member.subscribe([topic])
    try:
        since = member.epoch
        first = _consume(c)
        assert first == [0, 1, 2, 3, 4]
        assert member.metadata(since) is None and member.rebalanced(since)  # assigned meanwhile
        member.back_to_committed(10)
        since = member.epoch
        assert _consume(c) == [0, 1, 2, 3, 4]  # nothing committed: read again from the start
        read_under = member.metadata(since)
        assert read_under is not None
        time.sleep(8)  # past max.poll.interval: the client leaves the group in the background
        assert not c.memberid()
        assert member.metadata(since) is None
        tx = Producer(kafka_conf(infra, **{"transactional.id": f"member-tx-{tag}"}))
        tx.init_transactions(30)
        tx.begin_transaction()
        with pytest.raises(KafkaException, match="UNKNOWN_MEMBER_ID"):
            tx.send_offsets_to_transaction([TopicPartition(topic, 0, 5)], read_under, 30)
        tx.abort_transaction(30)
        (committed,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset < 0  # nothing was committed
    finally:
        c.close()

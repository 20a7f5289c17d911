"""The other ingress design, for the serving bench: a bridge process (here the bench's driver)
that consumes requests, sends them to a replica in blocks through a Serve handle
(``ModelServer.predict_messages``, raw bytes in and out), produces the results and commits each
block's offsets in one Kafka transaction; ``depth`` blocks are in flight at once."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.helpers import servers_conf


def bridge(handle: Any, servers: str, topic: str, results: str, n: int, block: int, depth: int = 2) -> None:  # fmt: skip
    group = f"bridge-{time.time_ns()}"
    consumer = Consumer(
        {
            **servers_conf(servers),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer = Producer(
        {
            **servers_conf(servers),
            "transactional.id": group,
            "linger.ms": 1,
            "retry.backoff.ms": 2,
            "retry.backoff.max.ms": 10,
        }
    )
    producer.init_transactions(30)
    consumer.subscribe([topic])
    inflight: list[tuple[Any, list[Any]]] = []
    done = 0
    while done < n:
        msgs = [m for m in consumer.consume(block, 0.005) if m.error() is None]
        if msgs:
            call = handle.predict_messages.remote([(m.key(), m.value()) for m in msgs])
            inflight.append((call, msgs))
        if inflight and (len(inflight) >= depth or not msgs):
            call, batch = inflight.pop(0)
            answers = call.result()
            producer.begin_transaction()
            for key, value in answers:
                producer.produce(results, value, key)
            offsets: dict[tuple[str, int], int] = {}
            for m in batch:
                offsets[(m.topic(), m.partition())] = m.offset() + 1
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            done += len(batch)
    consumer.close()

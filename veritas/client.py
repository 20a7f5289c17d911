"""A small Kafka client for the CLI and the demo: publish a command envelope and wait for its
result on events.results."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from commands.catalog import COMMAND_TYPES, topic_for
from infra import kafka
from veritas.bootstrap import Container


def envelope(
    command_type: str,
    payload: dict[str, Any],
    command_id: str | None = None,
    schema_version: int | None = None,
) -> dict[str, Any]:
    cls = COMMAND_TYPES.get(command_type)
    return {
        "command_id": command_id or str(uuid.uuid4()),
        "type": command_type,
        "schema_version": schema_version or (cls.schema_version if cls else 1),
        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "payload": payload,
    }


class ResultWatcher:
    """Subscribe to events.results from its current end before sending, then wait."""

    def __init__(self, container: Container) -> None:
        self.consumer = Consumer(
            kafka.client_config(
                container.settings,
                principal="client",
                **{
                    "group.id": f"veritas-cli-{uuid.uuid4()}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                },
            )
        )
        meta = self.consumer.list_topics("events.results", timeout=10)
        parts = meta.topics["events.results"].partitions
        # Resolve the end offsets now, so a result that lands right after we send is not missed.
        ends = [
            self.consumer.get_watermark_offsets(TopicPartition("events.results", p), timeout=10)[1]
            for p in parts
        ]
        self.consumer.assign(
            [TopicPartition("events.results", p, e) for p, e in zip(parts, ends, strict=True)]
        )
        self.seen: dict[str, dict[str, Any]] = {}

    def wait(self, command_id: str, timeout_s: float = 15.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while command_id not in self.seen and time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is not None and not msg.error():
                result = json.loads(msg.value() or b"{}")
                self.seen[result["command_id"]] = result
        return self.seen.get(command_id)

    def close(self) -> None:
        self.consumer.close()


def send(container: Container, token: str, env: dict[str, Any], key: str | None = None) -> None:
    producer = Producer(
        kafka.client_config(container.settings, principal="client", **{"enable.idempotence": True})
    )
    topic = topic_for(env["type"]) if env["type"] in COMMAND_TYPES else "registry.commands"
    producer.produce(
        topic,
        key=key or env["command_id"],
        value=json.dumps(env).encode(),
        headers=[("authorization", f"Bearer {token}".encode())],
    )
    producer.flush(10)

"""Kafka: topics as code, client configuration and the embedded broker's lifecycle
(infra/kafka/kafka.sh)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from veritas.settings import ROOT, Settings

KAFKA_SCRIPT = ROOT / "infra" / "kafka" / "kafka.sh"
FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
RELAY_POSITION_TOPIC = "veritas.relay.position"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int | None = None  # None: settings.topic_partitions
    config: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("registry.commands"),
    TopicSpec("governance.commands"),
    TopicSpec("training.commands"),
    TopicSpec("commands.results"),
    TopicSpec("commands.dlq", config={"retention.ms": "-1"}),
    TopicSpec("registry.events", config=FOREVER),
    TopicSpec("governance.events", config=FOREVER),
    TopicSpec("training.events", config=FOREVER),
    TopicSpec("serving.events", config=FOREVER),
    TopicSpec("monitoring.events", config=FOREVER),
    TopicSpec("inference.requests"),
    TopicSpec("inference.results"),
    # Internal: the relay's committed position, written in the same Kafka transaction as the events.
    TopicSpec(RELAY_POSITION_TOPIC, partitions=1, config={"cleanup.policy": "compact"}),
)


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, **extra}


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every topic that does not exist yet. Returns the names created."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(
            t.name,
            num_partitions=t.partitions or settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config={"min.insync.replicas": str(settings.topic_min_insync_replicas), **t.config},
        )
        for t in TOPICS
        if t.name not in existing
    ]
    created = []
    for name, fut in (
        admin.create_topics(wanted, request_timeout=timeout_s).items() if wanted else []
    ):
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def existing_topics(settings: Settings, timeout_s: float = 10.0) -> set[str]:
    return set(AdminClient(client_config(settings)).list_topics(timeout=timeout_s).topics)


def broker_ready(settings: Settings, timeout_s: float = 3.0) -> bool:
    try:
        AdminClient(client_config(settings)).list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False


def broker(settings: Settings, action: str) -> None:
    """Run infra/kafka/kafka.sh fetch|start|stop for the embedded broker."""
    subprocess.run(
        [
            "env",
            f"KAFKA_PORT={settings.kafka_port}",
            f"KAFKA_DATA_DIR={settings.kafka_data_dir}",
            f"KAFKA_HEAP={settings.kafka_heap}",
            f"KAFKA_JVM_OPTS={settings.kafka_jvm_opts}",
            "bash",
            str(KAFKA_SCRIPT),
            action,
        ],
        check=True,
    )


def broker_pid(settings: Settings) -> int | None:
    try:
        value = int((settings.kafka_data_dir / "broker.pid").read_text().strip())
        os.kill(value, 0)
        return value
    except (OSError, ValueError):
        return None


def where(m: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed record (always set on one)."""
    return str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)


def headers(m: Message) -> list[tuple[str, bytes]]:
    raw = m.headers() or []
    items = list(raw.items()) if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in items]


def transactional_producer(settings: Settings, transactional_id: str, **extra: Any) -> Producer:
    """A producer with its transactions initialised (which fences any older instance of the id)."""
    # A transaction that starts right after the previous commit finds the coordinator still
    # writing that commit's markers: AddPartitionsToTxn / AddOffsetsToTxn answer
    # CONCURRENT_TRANSACTIONS, and librdkafka retries after retry.backoff.ms (default 100 ms),
    # growing up to retry.backoff.max.ms. Back to back transactions then cost ~100 ms each instead
    # of ~3 ms (send_offsets_to_transaction p50 93 -> 3.9 ms on the bench stack); capping the growth
    # at 10 ms took the relay's produce + commit from p50 9.6 / p90 37 ms to 7.4 / 19 ms.
    producer = Producer(
        client_config(
            settings,
            **{
                "transactional.id": transactional_id,
                "retry.backoff.ms": 2,
                "retry.backoff.max.ms": 10,
                **extra,
            },
        )
    )
    producer.init_transactions(30)
    return producer

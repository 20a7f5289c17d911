"""Kafka: topics as code, client configuration and the embedded broker's lifecycle
(infra/kafka/kafka.sh)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from config.settings import ROOT, Settings
from infra.kafka import security
from infra.kafka.security import Principal, client_config
from infra.kafka.topics import FOREVER, RELAY_POSITION_TOPIC, TOPICS, TopicSpec

__all__ = [
    "FOREVER",
    "RELAY_POSITION_TOPIC",
    "TOPICS",
    "Principal",
    "TopicSpec",
    "client_config",
    "security",
]
KAFKA_SCRIPT = ROOT / "infra" / "kafka" / "kafka.sh"

# The broker's default: a topic's limit bounds a whole record batch, not one message, and clients
# batch up to librdkafka's batch.size (1,000,000 bytes) by default. A lower limit on a command
# topic makes a busy client's batches fail with MSG_SIZE_TOO_LARGE: commands lost at the sender.
BATCH_LIMIT = 1048588


def size_limits(settings: Settings, name: str) -> dict[str, str]:
    """Message size limits that agree end to end. A command topic takes whole client batches
    (BATCH_LIMIT); one command is at most command_max_bytes (the handler's `too_large` and the
    API's 413). The dead-letter topic takes an original that was compressed on the wire, whole,
    up to dlq_max_bytes plus its headers."""
    if name.endswith(".commands"):
        return {"max.message.bytes": str(max(BATCH_LIMIT, settings.command_max_bytes + 16 * 1024))}
    if name == "commands.dlq":
        return {"max.message.bytes": str(settings.dlq_max_bytes + 1024 * 1024)}
    return {}


def _config(settings: Settings, t: TopicSpec) -> dict[str, str]:
    return {
        "min.insync.replicas": str(settings.topic_min_insync_replicas),
        **t.config,
        **size_limits(settings, t.name),
    }


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every topic that does not exist yet, and bring the size limits of existing ones up
    to date. Returns the names created."""
    admin = AdminClient(client_config(settings, principal="admin"))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    _update_limits(settings, admin, [t.name for t in TOPICS if t.name in existing], timeout_s)
    wanted = [
        NewTopic(
            t.name,
            num_partitions=t.partitions or settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config=_config(settings, t),
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


def _update_limits(
    settings: Settings, admin: AdminClient, names: list[str], timeout_s: float
) -> None:
    changes = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in limits.items()
            ],
        )
        for name in names
        if (limits := size_limits(settings, name))
    ]
    for fut in (
        admin.incremental_alter_configs(changes, request_timeout=timeout_s).values()
        if changes
        else []
    ):
        fut.result()


def existing_topics(
    settings: Settings, timeout_s: float = 10.0, principal: Principal = "service"
) -> set[str]:
    return set(
        AdminClient(client_config(settings, principal=principal))
        .list_topics(timeout=timeout_s)
        .topics
    )


def port_open(settings: Settings) -> bool:
    """Whether the first bootstrap server accepts connections (no client, no log noise)."""
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def broker_ready(
    settings: Settings, timeout_s: float = 3.0, principal: Principal = "admin"
) -> bool:
    try:
        AdminClient(client_config(settings, principal=principal)).list_topics(timeout=timeout_s)
        return True
    except KafkaException:
        return False


def _script(settings: Settings, action: str) -> list[str]:
    """kafka.sh with the settings it reads (the admin password is read from its file there)."""
    return [
        "env",
        f"KAFKA_PORT={settings.kafka_port}",
        f"KAFKA_DATA_DIR={settings.kafka_data_dir}",
        f"KAFKA_SECRETS_DIR={settings.kafka_secrets_dir}",
        f"KAFKA_HEAP={settings.kafka_heap}",
        f"KAFKA_JVM_OPTS={settings.kafka_jvm_opts}",
        "bash",
        str(KAFKA_SCRIPT),
        action,
    ]


def broker(settings: Settings, action: str) -> None:
    """Run infra/kafka/kafka.sh fetch|start|stop for the embedded broker."""
    subprocess.run(_script(settings, action), check=True)


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


def transactional_producer(
    settings: Settings, transactional_id: str, principal: Principal, **extra: Any
) -> Producer:
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
            principal=principal,
            **{
                "transactional.id": transactional_id,
                "retry.backoff.ms": 2,
                "retry.backoff.max.ms": 10,
                # A killed instance's open transaction blocks read_committed readers at most this
                # long (its restarted successor fences it sooner).
                "transaction.timeout.ms": settings.kafka_transaction_timeout_ms,
                **extra,
            },
        )
    )
    producer.init_transactions(max(30.0, settings.kafka_call_timeout_s))
    return producer


def broker_command(settings: Settings) -> list[str]:
    """The embedded broker in the foreground (`kafka.sh run`), for the supervisor."""
    return _script(settings, "run")


def relay_position(
    settings: Settings, timeout_s: float = 30.0, principal: Principal = "relay"
) -> int:
    """The last notification id the relay committed to Kafka (0 if none): the value of the last
    committed record on its position topic."""
    consumer = Consumer(
        client_config(
            settings,
            principal=principal,
            **{
                "group.id": security.RELAY_POSITION_GROUP,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
        )
    )
    try:
        tp = TopicPartition(RELAY_POSITION_TOPIC, 0)
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        back = 64
        while True:
            start = max(low, high - back)
            last = _scan(consumer, start, timeout_s)
            if last is not None or start == low:
                return last or 0
            back *= 8  # only aborted transactions near the end: look further back
    finally:
        consumer.close()


def _scan(consumer: Consumer, start: int, timeout_s: float) -> int | None:
    consumer.assign([TopicPartition(RELAY_POSITION_TOPIC, 0, start)])
    last: int | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if (err := msg.error()) is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return last
            raise KafkaException(err)
        last = int(msg.value() or b"0")
    raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out reading the relay position"))

"""Helpers for tests that talk to the real stack like any client would."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from config.settings import Settings
from events.envelope import signed_message
from events.signatures import NoLegacy
from infra import kafka, keys
from infra.auth import issue_token
from infra.event_keys import PublishedKeys
from infra.kafka import Principal
from projections.believe import Trust


def token(s: Settings, subject: str, *roles: str) -> str:
    return issue_token(s, subject, list(roles))


def kafka_conf(s: Settings, principal: Principal = "admin", **extra: Any) -> dict[str, Any]:
    """A raw test's Kafka client's configuration: the super user unless a principal is named."""
    return kafka.client_config(s, principal=principal, **extra)


def servers_conf(servers: str, principal: Principal = "admin") -> dict[str, Any]:
    """The same for a client given only bootstrap servers (credentials: this process's Settings)."""
    return kafka.client_config(Settings(kafka_bootstrap_servers=servers), principal=principal)


def sasl_conf(principal: Principal = "admin") -> dict[str, str]:
    """Only the credentials (e.g. serving's IngressConfig.client), from this process's Settings."""
    return kafka.security.sasl_config(Settings(), principal)


def envelope(
    ctype: str, payload: dict[str, Any], command_id: str | None = None, version: int = 1
) -> dict[str, Any]:
    return {
        "command_id": command_id or str(uuid.uuid4()),
        "type": ctype,
        "schema_version": version,
        "issued_at": datetime.now(UTC).isoformat(),
        "payload": payload,
    }


def producer(s: Settings) -> Producer:
    return Producer({**kafka_conf(s), "linger.ms": 5, "enable.idempotence": True})


def publish(p: Producer, topic: str, value: bytes, tok: str | None, key: str | None = None) -> None:
    headers = [("authorization", f"Bearer {tok}".encode())] if tok else []
    p.produce(topic, key=key, value=value, headers=headers)


def end_offsets(s: Settings, topic: str) -> list[TopicPartition]:
    c = Consumer({**kafka_conf(s), "group.id": f"t-{uuid.uuid4()}"})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    out = [
        TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
        for p in parts
    ]
    c.close()
    return out


def read_from(
    s: Settings, start: list[TopicPartition], until: Any, timeout_s: float = 60.0
) -> list[Any]:
    """Read records from `start` (read_committed) until `until(records)` is true or time runs out."""
    c = Consumer(
        {
            **kafka_conf(s),
            "group.id": f"t-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    c.assign(start)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(out):
        for m in c.consume(1000, 0.2):
            if not m.error():
                out.append(m)
    c.close()
    return out


def results_for(
    s: Settings, start: list[TopicPartition], ids: Iterable[str], timeout_s: float = 60.0
) -> dict[str, list[dict[str, Any]]]:
    wanted = set(ids)
    found: dict[str, list[dict[str, Any]]] = {}

    def done(msgs: list[Any]) -> bool:
        for m in msgs[len(seen) :]:
            r = json.loads(m.value())
            if r["command_id"] in wanted:
                found.setdefault(r["command_id"], []).append(r)
        seen.extend(msgs[len(seen) :])
        return wanted <= set(found)

    seen: list[Any] = []
    read_from(s, start, done, timeout_s)
    return found


@dataclass
class Rec:
    """The parts of a confluent_kafka.Message that the projections read."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _headers: list[tuple[str, bytes]]

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def error(self) -> None:
        return None


def trust_of(s: Settings) -> Trust:
    """What a projector given these settings believes: events signed by their keyring."""
    return Trust(PublishedKeys(s), NoLegacy())


def sign_doc(s: Settings, doc: dict[str, Any]) -> dict[str, Any]:
    """A hand-built v2 envelope (its hash computed) signed as the event store signs."""
    key_id, signature = keys.load(s).sign(signed_message(doc["hash"]))
    return {**doc, "key_id": key_id, "signature": signature}

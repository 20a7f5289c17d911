"""Kafka authentication and ACLs on the real embedded broker: who may write and read what, and
that `veritas client-config` gives a working client configuration."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from config.settings import Settings
from infra.kafka import security
from tests.helpers import kafka_conf

pytestmark = pytest.mark.kafka


def _deliver(
    conf: dict[str, Any], topic: str, value: bytes = b"security-test"
) -> KafkaError | None:
    """Produce one record; the delivery error (None: written)."""
    p = Producer({**conf, "message.timeout.ms": 10_000})
    errors: list[KafkaError | None] = []
    p.produce(topic, value=value, on_delivery=lambda err, _msg: errors.append(err))
    p.flush(15)
    assert errors, "no delivery report"
    return errors[0]


def test_client_cannot_write_event_topics(infra: Settings) -> None:
    err = _deliver(kafka_conf(infra, "client"), "registry.events")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    err = _deliver(kafka_conf(infra, "service"), "registry.events")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_client_cannot_read_event_topics(infra: Settings) -> None:
    c = Consumer(kafka_conf(infra, "client", **{"group.id": f"veritas-cli-{uuid.uuid4()}"}))
    try:
        topic = c.list_topics("registry.events", timeout=10).topics["registry.events"]
        assert topic.error is not None
        assert topic.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        c.subscribe(["registry.events"])
        codes = set()
        for _ in range(40):
            msg = c.poll(0.5)
            if msg is not None and (err := msg.error()) is not None:
                codes.add(err.code())
                break
            assert msg is None, "a record of registry.events reached the client"
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    finally:
        c.close()


def test_no_or_wrong_credentials_cannot_connect(infra: Settings) -> None:
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": infra.kafka_bootstrap_servers}).list_topics(timeout=5)
    wrong = {**kafka_conf(infra, "client"), "sasl.password": "not-the-password"}
    with pytest.raises(KafkaException):
        AdminClient(wrong).list_topics(timeout=5)


def test_relay_can_write_event_topics(infra: Settings) -> None:
    """In a transaction that is aborted (no reader sees it), under a transactional id granted for
    this test only: the running relay's own id is not fenced."""
    tid = f"veritas-test-relay-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka_conf(infra))
    pattern = (ResourceType.TRANSACTIONAL_ID, tid, ResourcePatternType.LITERAL, "User:relay", "*")
    ops = (AclOperation.WRITE, AclOperation.DESCRIBE)
    grant = [AclBinding(*pattern, op, AclPermissionType.ALLOW) for op in ops]
    for fut in admin.create_acls(grant).values():
        fut.result()
    try:
        p = Producer(kafka_conf(infra, "relay", **{"transactional.id": tid}))
        p.init_transactions(30)
        p.begin_transaction()
        errors: list[KafkaError | None] = []
        p.produce("registry.events", value=b"aborted", on_delivery=lambda e, _m: errors.append(e))
        p.flush(15)
        assert errors == [None]
        p.abort_transaction(30)
    finally:
        gone = [AclBindingFilter(*pattern, op, AclPermissionType.ALLOW) for op in ops]
        for fut in admin.delete_acls(gone).values():
            fut.result()


def test_client_can_write_commands_and_requests(infra: Settings) -> None:
    for topic in ("registry.commands", "inference.requests", "inference.feedback"):
        assert _deliver(kafka_conf(infra, "client"), topic, b"{not json") is None, topic
    err = _deliver(kafka_conf(infra, "client"), "commands.dlq")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_client_config_command_gives_a_working_client(infra: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "veritas.cli", "client-config"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    conf = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert conf["sasl.username"] == "client" and conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["bootstrap.servers"] == infra.kafka_bootstrap_servers
    assert _deliver(conf, "registry.commands", b"{not json") is None
    err = _deliver(conf, "registry.events")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_init_leaves_exactly_the_granted_acls(infra: Settings) -> None:
    """apply() is idempotent and converges: a binding the grants do not name is revoked."""
    admin = AdminClient(kafka_conf(infra))
    forged = AclBinding(
        ResourceType.TOPIC, "registry.events", ResourcePatternType.LITERAL, "User:client", "*",
        AclOperation.WRITE, AclPermissionType.ALLOW,
    )  # fmt: skip
    for fut in admin.create_acls([forged]).values():
        fut.result()
    security.apply(infra)
    security.apply(infra)
    found = security._bindings_of_users(infra, admin, 30)
    wanted = security.acl_bindings(infra)
    assert {security._key(b) for b in found} == {security._key(b) for b in wanted}
    assert len(found) == len(wanted)
    err = _deliver(kafka_conf(infra, "client"), "registry.events")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

"""Kafka authentication and ACLs as configuration: the broker's server.properties, the ACL
bindings, each principal's client configuration, and that no password leaks into a repr or a log."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from pydantic import SecretStr
from typer.testing import CliRunner

from config.settings import Settings
from infra import kafka
from infra.kafka import TOPICS, security
from workers.sagas.app import credentials as faust_credentials


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(var_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:1", **kw)  # type: ignore[arg-type]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_server_properties_enable_sasl_and_the_authorizer(tmp_path: Path) -> None:
    data, secrets = tmp_path / "kafka", tmp_path / "secrets"
    env = {**os.environ, "KAFKA_DATA_DIR": str(data), "KAFKA_SECRETS_DIR": str(secrets)}
    out = subprocess.run(
        ["bash", str(kafka.KAFKA_SCRIPT), "config"], env=env, capture_output=True, check=True
    )
    path = Path(out.stdout.decode().strip())
    props = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    password = (secrets / "admin.password").read_text().strip()
    assert len(password) >= 20
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert (
        props["listener.security.protocol.map"] == "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    )
    assert props["listeners"].startswith("CLIENT://127.0.0.1:")
    assert "SCRAM-SHA-256" in props["listener.name.client.sasl.enabled.mechanisms"]
    assert f'user_admin="{password}"' in props["listener.name.client.plain.sasl.jaas.config"]
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert _mode(path) == 0o600 and _mode(secrets / "admin.password") == 0o600
    # Rewritten with the same password (the broker's admin does not change between starts).
    subprocess.run(["bash", str(kafka.KAFKA_SCRIPT), "config"], env=env, check=True)
    assert f'password="{password}"' in path.read_text()


def test_passwords_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    security.ensure_secrets(s)
    first = {p: security.password(s, p).get_secret_value() for p in security.PRINCIPALS}
    assert len(set(first.values())) == 4
    for p in security.PRINCIPALS:
        assert _mode(security.secret_path(s, p)) == 0o600
    assert _mode(s.kafka_secrets_dir) == 0o700
    security.ensure_secrets(s)
    assert {p: security.password(s, p).get_secret_value() for p in security.PRINCIPALS} == first


def test_configured_passwords_and_usernames_win(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        kafka_usernames={"client": "alice"},
        kafka_passwords={"client": SecretStr("pw-alice"), "admin": SecretStr("pw-admin")},
    )
    security.ensure_secrets(s)
    conf = kafka.client_config(s, principal="client")
    assert (conf["sasl.username"], conf["sasl.password"]) == ("alice", "pw-alice")
    assert not security.secret_path(s, "client").exists()
    # The embedded broker reads admin's password from its file.
    assert security.secret_path(s, "admin").read_text().strip() == "pw-admin"


@pytest.mark.parametrize("principal", security.PRINCIPALS)
def test_client_config_per_principal(tmp_path: Path, principal: security.Principal) -> None:
    s = _settings(tmp_path)
    conf = kafka.client_config(s, principal=principal, **{"linger.ms": 5})
    assert conf["bootstrap.servers"] == "127.0.0.1:1"
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.mechanism"] == ("PLAIN" if principal == "admin" else "SCRAM-SHA-256")
    assert conf["sasl.username"] == principal
    assert conf["sasl.password"] == security.password(s, principal).get_secret_value()
    assert conf["linger.ms"] == 5


def test_plaintext_cluster_gets_no_credentials(tmp_path: Path) -> None:
    s = _settings(tmp_path, kafka_security_protocol="PLAINTEXT")
    assert kafka.client_config(s, principal="service") == {"bootstrap.servers": "127.0.0.1:1"}
    assert faust_credentials(s) is None
    security.ensure_secrets(s)
    assert not s.kafka_secrets_dir.exists()


def _allowed(s: Settings) -> set[tuple[str, str, str, str]]:
    """(principal, resource type, name pattern, operation) of every ALLOW binding."""
    out = set()
    for b in security.acl_bindings(s):
        name = b.name + ("*" if b.resource_pattern_type == ResourcePatternType.PREFIXED else "")
        out.add((b.principal, b.restype.name, name, b.operation.name))
    return out


def test_only_the_relay_writes_events_and_its_position(tmp_path: Path) -> None:
    acls = _allowed(_settings(tmp_path))
    events = [t.name for t in TOPICS if t.name.endswith(".events")]
    assert len(events) == 5
    for topic in [*events, kafka.RELAY_POSITION_TOPIC]:
        writers = {p for p, r, n, op in acls if r == "TOPIC" and n == topic and op == "WRITE"}
        assert writers == {"User:relay"}, topic
    assert ("User:relay", "TRANSACTIONAL_ID", "veritas-relay", "WRITE") in acls
    assert not any(n.startswith("veritas-relay") and p != "User:relay" for p, r, n, _ in acls if r == "TRANSACTIONAL_ID")  # fmt: skip


def test_client_writes_commands_and_requests_and_reads_results(tmp_path: Path) -> None:
    acls = _allowed(_settings(tmp_path))
    client = {(r, n, op) for p, r, n, op in acls if p == "User:client"}
    commands = [t.name for t in TOPICS if t.name.endswith(".commands")]
    for topic in [*commands, "inference.requests", "inference.feedback"]:
        assert ("TOPIC", topic, "WRITE") in client
    for topic in ("events.results", "inference.results"):
        assert ("TOPIC", topic, "READ") in client and ("TOPIC", topic, "WRITE") not in client
    written = {n for r, n, op in client if r == "TOPIC" and op == "WRITE"}
    assert not {n for n in written if n.endswith(".events")}
    assert ("GROUP", "veritas-cli-*", "READ") in client


def test_service_reads_everything_and_writes_all_but_the_relays_topics(tmp_path: Path) -> None:
    acls = _allowed(_settings(tmp_path))
    service = {(r, n, op) for p, r, n, op in acls if p == "User:service"}
    assert ("TOPIC", "*", "READ") in service  # every topic, copies of the log too
    for t in TOPICS:
        relays = t.name.endswith(".events") or t.name == kafka.RELAY_POSITION_TOPIC
        assert (("TOPIC", t.name, "WRITE") in service) is not relays
    assert ("GROUP", "veritas-*", "READ") in service
    assert ("TRANSACTIONAL_ID", "veritas-command-handler*", "WRITE") in service
    assert ("TRANSACTIONAL_ID", "veritas-serving*", "WRITE") in service


def test_bindings_are_allow_only_for_the_three_users(tmp_path: Path) -> None:
    bindings = security.acl_bindings(_settings(tmp_path))
    assert {b.principal for b in bindings} == {"User:relay", "User:service", "User:client"}
    assert all(b.host == "*" and b.operation != AclOperation.ALL for b in bindings)
    assert {b.restype for b in bindings} <= {
        ResourceType.TOPIC,
        ResourceType.GROUP,
        ResourceType.TRANSACTIONAL_ID,
    }


def test_no_password_in_reprs_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = _settings(tmp_path, kafka_passwords={"relay": SecretStr("hunter2-relay")})
    caplog.set_level(logging.DEBUG)
    cred = security.credentials(s, "relay")
    secret = cred.password.get_secret_value()
    assert secret == "hunter2-relay"
    service = security.password(s, "service").get_secret_value()
    faust = faust_credentials(s)
    for text in (repr(cred), str(cred), repr(s), str(s), repr(faust), caplog.text):
        assert secret not in text and service not in text


def test_cli_prints_librdkafka_properties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from veritas.cli import app

    monkeypatch.setenv("VERITAS_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    out = CliRunner().invoke(app, ["client-config"])
    assert out.exit_code == 0, out.output
    conf = dict(line.split("=", 1) for line in out.output.splitlines())
    assert conf == kafka.client_config(Settings(), principal="client")
    assert set(conf) == {
        "bootstrap.servers",
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "sasl.password",
    }
    bad = CliRunner().invoke(app, ["client-config", "--principal", "root"])
    assert bad.exit_code == 2

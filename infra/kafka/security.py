"""Kafka authentication and authorization: the principals, their credentials and their ACLs.

The embedded broker (kafka.sh) authenticates every connection with SASL on 127.0.0.1, authorizes
with the StandardAuthorizer and denies what no ACL allows. Its super user `admin` signs in with
PLAIN (its password is in the broker's own JAAS configuration, so it exists before any metadata
does: `veritas init` works on a data directory formatted before authentication existed). The
other principals are SCRAM users that `veritas init` creates as admin, with the ACLs below:

- `relay`: the only writer of the event topics and of the relay position (transactional).
- `service`: every worker (command handlers, projector, sagas, step workers, serving, drift
  monitor, API) and the operator's CLI (replay, verify): reads every topic, writes every topic of
  Veritas's but those two.
- `client`: users' tools: writes commands and inference requests/feedback, reads their results.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from config.settings import Settings
from infra.kafka.topics import RELAY_POSITION_TOPIC, TOPICS

Principal = Literal["admin", "relay", "service", "client"]
PRINCIPALS: tuple[Principal, ...] = get_args(Principal)
SCRAM_USERS: tuple[Principal, ...] = ("relay", "service", "client")
SCRAM_ITERATIONS = 4096
RELAY_TRANSACTIONAL_ID = "veritas-relay"
RELAY_POSITION_GROUP = "veritas-relay-position"
Resource = Literal["topic", "group", "transactional_id"]


@dataclass(frozen=True)
class Credentials:
    username: str
    password: SecretStr  # its repr is '**********'


@dataclass(frozen=True)
class Grant:
    """Operations that one principal may do on one resource (a name, or a name prefix)."""

    principal: Principal
    resource: Resource
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False


def enabled(settings: Settings) -> bool:
    return settings.kafka_security_protocol != "PLAINTEXT"


def secret_path(settings: Settings, principal: Principal) -> Path:
    return settings.kafka_secrets_dir / f"{principal}.password"


def _read_or_create(path: Path) -> str:
    """The password in `path`; a new random one, written atomically with mode 0600, if none."""
    with contextlib.suppress(FileNotFoundError):
        if value := path.read_text().strip():
            return value
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(24) + "\n")
    try:
        os.link(tmp, path)  # fails if another process got there first: its password wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def password(settings: Settings, principal: Principal) -> SecretStr:
    configured = settings.kafka_passwords.get(principal)
    if configured is not None:
        return configured
    return SecretStr(_read_or_create(secret_path(settings, principal)))


def credentials(settings: Settings, principal: Principal) -> Credentials:
    name = settings.kafka_usernames.get(principal, principal)
    return Credentials(name, password(settings, principal))


def mechanism(settings: Settings, principal: Principal) -> str:
    return (
        settings.kafka_admin_sasl_mechanism
        if principal == "admin"
        else settings.kafka_sasl_mechanism
    )


def ensure_secrets(settings: Settings) -> None:
    """Every principal's password exists (generated once). The embedded broker reads admin's from
    its file (kafka.sh), so a configured one is written there."""
    if not enabled(settings):
        return
    for p in PRINCIPALS:
        password(settings, p)
    admin = settings.kafka_passwords.get("admin")
    if settings.kafka_embedded and admin is not None:
        _write_admin(secret_path(settings, "admin"), admin.get_secret_value())


def _write_admin(path: Path, value: str) -> None:
    if any(c in value for c in '"\\\n'):
        raise ValueError("the Kafka admin password may not contain quotes, backslashes or newlines")
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().strip() == value:
            return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def sasl_config(settings: Settings, principal: Principal) -> dict[str, str]:
    """librdkafka's security settings for one principal (empty without authentication)."""
    if not enabled(settings):
        return {}
    cred = credentials(settings, principal)
    out = {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": mechanism(settings, principal),
        "sasl.username": cred.username,
        "sasl.password": cred.password.get_secret_value(),
    }
    if settings.kafka_ssl_ca_location:
        out["ssl.ca.location"] = settings.kafka_ssl_ca_location
    return out


def client_config(settings: Settings, *, principal: Principal, **extra: Any) -> dict[str, Any]:
    """The one place every Kafka client gets its configuration: bootstrap servers and the
    principal's credentials, then `extra`."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        **sasl_config(settings, principal),
        **extra,
    }


def _topics(kind: str) -> tuple[str, ...]:
    names = [t.name for t in TOPICS]
    if kind == "events":
        return tuple(n for n in names if n.endswith(".events"))
    if kind == "commands":
        return tuple(n for n in names if n.endswith(".commands"))
    return tuple(names)


def grants(settings: Settings) -> list[Grant]:
    """Every ACL, as data. Kafka's patterns are literal or prefix, so topics are named one by one."""
    relay_writes = (*_topics("events"), RELAY_POSITION_TOPIC)
    service_writes = tuple(n for n in _topics("all") if n not in relay_writes)
    client_writes = (*_topics("commands"), "inference.requests", "inference.feedback")
    client_reads = ("events.results", "inference.results")
    rw = ("WRITE", "DESCRIBE")
    out = [Grant("relay", "topic", t, rw) for t in relay_writes]
    out += [
        Grant("relay", "topic", RELAY_POSITION_TOPIC, ("READ",)),
        Grant("relay", "group", RELAY_POSITION_GROUP, ("READ",)),
        Grant("relay", "transactional_id", RELAY_TRANSACTIONAL_ID, rw),
    ]
    # Any topic, not only Veritas's own: `veritas verify --topic` checks copies of the log too.
    out.append(Grant("service", "topic", "*", ("READ", "DESCRIBE")))
    out += [Grant("service", "topic", t, ("WRITE",)) for t in service_writes]
    out += [
        Grant("service", "group", "veritas-", ("READ", "DESCRIBE"), prefixed=True),
        Grant("service", "transactional_id", "veritas-command-handler", rw, prefixed=True),
        Grant("service", "transactional_id", settings.serving_group_id, rw, prefixed=True),
    ]
    out += [Grant("client", "topic", t, rw) for t in client_writes]
    out += [Grant("client", "topic", t, ("READ", "DESCRIBE")) for t in client_reads]
    out.append(Grant("client", "group", "veritas-cli-", ("READ",), prefixed=True))
    return out


_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}


def acl_bindings(settings: Settings) -> list[AclBinding]:
    return [
        AclBinding(
            _RESOURCE[g.resource],
            g.name,
            ResourcePatternType.PREFIXED if g.prefixed else ResourcePatternType.LITERAL,
            f"User:{credentials(settings, g.principal).username}",
            "*",
            AclOperation[op],
            AclPermissionType.ALLOW,
        )
        for g in grants(settings)
        for op in g.operations
    ]


def upsert_users(settings: Settings, admin: AdminClient, timeout_s: float) -> None:
    """Create (or reset to the current passwords) the SCRAM users: idempotent."""
    scram = ScramMechanism[settings.kafka_sasl_mechanism.replace("-", "_")]
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            credentials(settings, p).username,
            ScramCredentialInfo(scram, SCRAM_ITERATIONS),
            password(settings, p).get_secret_value().encode(),
        )
        for p in SCRAM_USERS
    ]
    for fut in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).values():
        fut.result()


def create_acls(settings: Settings, admin: AdminClient, timeout_s: float) -> None:
    """Create every binding (creating one that exists is a no-op), then delete the bindings of
    the three users that the grants no longer name: the broker's ACLs are exactly these."""
    wanted = acl_bindings(settings)
    for fut in admin.create_acls(wanted, request_timeout=timeout_s).values():
        fut.result()
    keep = {_key(b) for b in wanted}
    stale = [b for b in _bindings_of_users(settings, admin, timeout_s) if _key(b) not in keep]
    if stale:
        filters = [AclBindingFilter(*_key(b)) for b in stale]
        for fut in admin.delete_acls(filters, request_timeout=timeout_s).values():
            fut.result()


def _key(b: AclBinding) -> tuple[Any, ...]:
    return (
        b.restype,
        b.name,
        b.resource_pattern_type,
        b.principal,
        b.host,
        b.operation,
        b.permission_type,
    )


def _bindings_of_users(
    settings: Settings, admin: AdminClient, timeout_s: float
) -> list[AclBinding]:
    out: list[AclBinding] = []
    for p in SCRAM_USERS:
        principal = f"User:{credentials(settings, p).username}"
        # None: any name, any host (the filter's stub types them as str).
        anything = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,  # type: ignore[arg-type]
            AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        out += admin.describe_acls(anything, request_timeout=timeout_s).result()
    return out


def wait_users(settings: Settings, timeout_s: float) -> None:
    """Until every SCRAM user can sign in (new credentials reach the broker asynchronously)."""
    deadline = time.monotonic() + timeout_s
    for p in SCRAM_USERS:
        while True:
            try:
                AdminClient(client_config(settings, principal=p)).list_topics(timeout=2.0)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def apply(settings: Settings, timeout_s: float = 30.0) -> None:
    """`veritas init`'s part: the SCRAM users and the ACLs, as admin (idempotent)."""
    if not enabled(settings) or not settings.kafka_manage_acls:
        return
    admin = AdminClient(client_config(settings, principal="admin"))
    if settings.kafka_sasl_mechanism.startswith("SCRAM"):
        upsert_users(settings, admin, timeout_s)
    create_acls(settings, admin, timeout_s)
    wait_users(settings, timeout_s)

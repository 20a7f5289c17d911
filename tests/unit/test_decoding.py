"""commands.decoding.decode: raw bytes + authorization header + topic -> Ready, a rejection or a
dead letter."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from commands.catalog import COMMAND_TYPES, topic_for
from commands.decoding import DeadLetter, Ready, decode
from commands.registry import RegisterDataset, RegisterModel
from config.settings import Settings
from domain.rbac import Role
from events.results import CommandResult
from infra.auth import issue_token

S = Settings(jwt_secret="unit-test-secret-0123456789-abcdefghijklmnop")
ALICE = f"Bearer {issue_token(S, 'alice', ['data_scientist', 'ml_engineer'])}"
CAROL = f"Bearer {issue_token(S, 'carol', ['approver'])}"
SHA = "ab" * 32
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # the handler's clock in these tests

MODEL = {"name": "fraud", "description": "d", "intended_use": "scoring", "limitations": "l"}
DATASET = {"name": "txns", "version": "1.0.0", "uri": "s3://b/txns", "checksum": SHA}


def env(
    ctype: str = "RegisterModel", payload: dict[str, Any] | None = None, **over: Any
) -> dict[str, Any]:
    return {
        "command_id": over.pop("command_id", f"cmd-{uuid.uuid4()}"),
        "type": ctype,
        "schema_version": over.pop("schema_version", 2 if ctype == "RegisterModel" else 1),
        "issued_at": over.pop("issued_at", "2026-12-02T11:59:00Z"),
        "payload": MODEL if payload is None else payload,
        **over,
    }


def run(
    doc: Any, auth: str | None = ALICE, topic: str | None = None
) -> Ready | CommandResult | DeadLetter:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    ctype = doc.get("type") if isinstance(doc, dict) else None
    home = topic_for(ctype) if isinstance(ctype, str) and ctype in COMMAND_TYPES else None
    return decode(S, raw, auth, topic or home or "registry.commands", NOW)


def rejected(
    doc: dict[str, Any], reason: str, auth: str | None = ALICE, topic: str | None = None
) -> CommandResult:
    out = run(doc, auth, topic)
    assert isinstance(out, CommandResult), out
    assert out.status == "rejected"
    assert out.reason_code == reason, out.message
    assert out.command_id == doc["command_id"]
    assert out.events == []
    return out


def schema_violation(doc: dict[str, Any], *names: str) -> str:
    message = rejected(doc, "schema_violation").message
    assert message
    for name in names:
        assert name in message, f"{name!r} not named in {message!r}"
    return message


# --- dead letters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"{this is not json",
        b"",
        b'{"command_id": "c-1"',
        b"\xff\xfe\xfa",
        b'{"command_id": "caf\xe9"}',
    ],
    ids=["garbage", "empty", "truncated", "binary", "latin-1"],
)
def test_invalid_json_or_not_utf8_is_dead_lettered(raw: bytes) -> None:
    out = run(raw)
    assert isinstance(out, DeadLetter) and out.reason == "invalid_json"


def test_missing_value_and_oversized_messages_are_dead_lettered() -> None:
    no_value = decode(S, None, ALICE, "registry.commands", NOW)
    assert no_value == DeadLetter("invalid_json", "empty message")
    assert S.command_max_bytes == 256 * 1024
    big = json.dumps(env(payload={**MODEL, "description": "x" * S.command_max_bytes})).encode()
    out = run(big)
    assert isinstance(out, DeadLetter) and out.reason == "too_large"
    assert str(len(big)) in out.detail and "command_max_bytes" in out.detail


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2],
        "a string",
        42,
        None,
        {"type": "RegisterModel"},
        {"command_id": 7},
        {"command_id": ""},
        {"command_id": "has spaces"},
        {"command_id": "x" * 129},
    ],
    ids=[
        "list",
        "string",
        "number",
        "null",
        "no-id",
        "int-id",
        "empty-id",
        "bad-chars",
        "too-long",
    ],
)
def test_json_without_a_valid_command_id_is_dead_lettered(doc: Any) -> None:
    out = run(doc)
    assert isinstance(out, DeadLetter) and out.reason == "schema_violation"


def test_dead_letters_do_not_need_a_token() -> None:
    # nothing can be answered without a command_id, so auth is not even looked at
    out = run(b"nope", None)
    assert isinstance(out, DeadLetter) and out.reason == "invalid_json"


# --- rejections -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["DropModel", "registermodel", None, 3])
def test_unknown_type(ctype: Any) -> None:
    doc = env()
    doc["type"] = ctype
    rejected(doc, "unknown_type")


def test_no_token() -> None:
    rejected(env(), "unauthenticated", auth=None)


def test_expired_token() -> None:
    now = int(time.time())
    tok = jwt.encode(
        {"sub": "alice", "roles": ["admin"], "exp": now - 10},
        S.jwt_secret.get_secret_value(),
        algorithm="HS256",
    )
    assert "expired" in (rejected(env(), "unauthenticated", f"Bearer {tok}").message or "")


def test_forged_token() -> None:
    tok = jwt.encode(
        {"sub": "alice", "roles": ["admin"], "exp": int(time.time()) + 60},
        "not-the-secret-but-long-enough-0123456789",
        algorithm="HS256",
    )
    rejected(env(), "unauthenticated", f"Bearer {tok}")


def test_authentication_comes_before_type_lookup() -> None:
    rejected(env("DropModel"), "unauthenticated", auth=None)


def test_forbidden_role() -> None:
    out = rejected(env(), "forbidden", auth=CAROL)
    assert "RegisterModel" in (out.message or "")


def test_forbidden_comes_before_payload_validation() -> None:
    rejected(env(payload={}), "forbidden", auth=CAROL)


def test_missing_field_is_named() -> None:
    payload = {k: v for k, v in MODEL.items() if k != "description"}
    schema_violation(env(payload=payload), "description", "required")


def test_extra_field_is_named() -> None:
    schema_violation(env(payload={**MODEL, "colour": "blue"}), "colour")


def test_nested_field_is_named() -> None:
    payload = {
        "model_name": "fraud",
        "version": "1.0.0",
        "artifact": {"uri": "s3://m", "sha256": "nope", "signature": "sig"},
    }
    schema_violation(env("RegisterModelVersion", payload), "artifact.sha256", "sha256")


@pytest.mark.parametrize("version", ["1.2", "1.2.3.4", "01.2.3", "latest", "1.2.3-rc1", ""])
def test_bad_semver(version: str) -> None:
    schema_violation(env("RegisterDataset", {**DATASET, "version": version}), "version", "semantic")


@pytest.mark.parametrize("checksum", ["abc", "g" * 64, "ab" * 33, "md5:" + "ab" * 32])
def test_bad_sha256(checksum: str) -> None:
    schema_violation(
        env("RegisterDataset", {**DATASET, "checksum": checksum}), "checksum", "sha256"
    )


def test_bad_name() -> None:
    schema_violation(env(payload={**MODEL, "name": "no spaces allowed"}), "name")


def test_bad_stage() -> None:
    schema_violation(
        env("TransitionStage", {"model_name": "fraud", "version": "1.0.0", "stage": "prod"}),
        "stage",
    )


def test_bad_envelope_fields_are_named() -> None:
    doc = env()
    del doc["issued_at"]
    schema_violation(doc, "issued_at")
    schema_violation(env(unexpected="x"), "unexpected")
    schema_violation(env(schema_version=0), "schema_version")
    schema_violation(env(payload=["not", "an", "object"]), "payload")


def test_payload_must_be_the_current_shape() -> None:
    # v2 renamed `purpose`: a v2 message still using it is refused, naming both fields
    payload = {k: v for k, v in MODEL.items() if k != "intended_use"} | {"purpose": "scoring"}
    schema_violation(env(payload=payload), "intended_use", "purpose")


def test_register_model_v1_with_purpose_is_upcast() -> None:
    payload = {k: v for k, v in MODEL.items() if k != "intended_use"} | {
        "purpose": "legacy scoring"
    }
    out = run(env(payload=payload, schema_version=1))
    assert isinstance(out, Ready), out
    assert isinstance(out.command, RegisterModel)
    assert out.command.intended_use == "legacy scoring"
    assert out.envelope.schema_version == 1


def test_newer_schema_version_than_supported_is_refused() -> None:
    schema_violation(env(schema_version=3), "newer", "3")


# --- success --------------------------------------------------------------------------------------


def test_ready_carries_envelope_command_and_principal() -> None:
    doc = env(command_id="cmd-ready-1", correlation_id="corr-7")
    out = run(doc)
    assert isinstance(out, Ready)
    assert out.envelope.command_id == "cmd-ready-1"
    assert out.envelope.correlation_id == "corr-7"
    assert out.command == RegisterModel(**MODEL)
    assert out.principal.subject == "alice"
    assert out.principal.roles == frozenset({Role.DATA_SCIENTIST, Role.ML_ENGINEER})


def test_values_are_normalised() -> None:
    payload = {**DATASET, "version": " v1.2.3 ", "checksum": "SHA256:" + SHA.upper()}
    out = run(env("RegisterDataset", payload))
    assert isinstance(out, Ready), out
    assert isinstance(out.command, RegisterDataset)
    assert out.command.version == "1.2.3"
    assert out.command.checksum == SHA


def test_non_ascii_utf8_payload_is_fine() -> None:
    out = run(env(payload={**MODEL, "description": "Modèle — 模型 ✓"}))
    assert isinstance(out, Ready) and out.command.description == "Modèle — 模型 ✓"  # type: ignore[attr-defined]

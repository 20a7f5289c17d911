"""The door's input limits, one regression test per reproduced case: what the command handler
accepts, every reader of the events must be able to keep. Each refusal is a rejection naming the
field (or a dead letter when not even a command_id can be read), never an exception."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from commands.decoding import DeadLetter, Ready, decode
from config.settings import Settings
from events.results import CommandResult
from infra.auth import issue_token
from tests.unit.test_decoding import ALICE, CAROL, MODEL, NOW, S, env, rejected, run

SHA = "ab" * 32


def version(**over: Any) -> dict[str, Any]:
    payload = {
        "model_name": "fraud",
        "version": "1.0.0",
        "artifact": {"uri": "s3://m/1", "sha256": SHA, "signature": "sig"},
        "metrics": {"auc": 0.9},
        **over,
    }
    return env("RegisterModelVersion", payload)


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


def raw_of(doc: dict[str, Any], **literal: str) -> bytes:
    """`doc` as JSON with placeholders "<name>" replaced by raw JSON text (NaN, 1e400, ...)."""
    text = json.dumps(doc)
    for name, value in literal.items():
        text = text.replace(f'"<{name}>"', value)
    return text.encode()


def message(out: Any, reason: str) -> str:
    assert isinstance(out, CommandResult), out
    assert (out.status, out.reason_code) == ("rejected", reason), out
    assert out.message
    return out.message


# --- 1. nesting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 5_000, 60_000])
def test_nesting_beyond_the_parser_is_dead_lettered_or_rejected_never_raised(depth: int) -> None:
    raw = raw_of(
        version(lineage={"training_config": {"x": "<deep>"}}), deep="[" * depth + "]" * depth
    )
    out = decode(S, raw, ALICE, "registry.commands", NOW)
    if isinstance(out, DeadLetter):
        assert out.reason == "too_deep"
    else:
        assert "payload.lineage.training_config" in message(out, "too_deep")


def test_lineage_nested_250_deep_is_rejected_naming_the_field() -> None:
    msg = message(run(version(lineage={"training_config": nested(250)})), "too_deep")
    assert msg.startswith("payload.lineage.training_config.a")
    assert str(S.command_max_depth) in msg


def test_nesting_up_to_the_limit_is_accepted_and_one_more_is_not() -> None:
    # envelope, payload and lineage are 3 levels; training_config is the 4th
    fits = nested(S.command_max_depth - 3)
    assert isinstance(run(version(lineage={"training_config": fits})), Ready)
    message(run(version(lineage={"training_config": {"b": fits}})), "too_deep")


def test_the_depth_limit_is_a_setting() -> None:
    shallow = Settings(jwt_secret=S.jwt_secret, command_max_depth=8)
    raw = json.dumps(version(lineage={"training_config": nested(6)})).encode()
    assert isinstance(decode(shallow, raw, ALICE, "registry.commands", NOW), CommandResult)
    assert isinstance(decode(S, raw, ALICE, "registry.commands", NOW), Ready)


# --- 2. numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 400 + ".0"]
)
def test_non_finite_metrics_are_rejected_naming_the_metric(literal: str) -> None:
    out = decode(
        S, raw_of(version(metrics={"auc": "<x>"}), x=literal), ALICE, "registry.commands", NOW
    )
    assert message(out, "schema_violation").startswith("payload.metrics.auc: ")


def test_non_finite_numbers_in_free_dicts_are_rejected_too() -> None:
    doc = version(lineage={"training_config": {"lr": [0.1, "<x>"]}})
    out = decode(S, raw_of(doc, x="NaN"), ALICE, "registry.commands", NOW)
    assert "payload.lineage.training_config.lr[1]: NaN" in message(out, "schema_violation")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (2**63 - 1, True),
        (-(2**63), True),
        (2**63, False),
        (-(2**63) - 1, False),
        ("9" * 5001, False),
    ],
    ids=["max", "min", "max+1", "min-1", "5001-digits"],
)
def test_integers_are_limited_to_64_bits(value: int | str, ok: bool) -> None:
    doc = version(lineage={"training_config": {"n": "<n>"}})
    out = decode(S, raw_of(doc, n=str(value)), ALICE, "registry.commands", NOW)
    if ok:
        assert isinstance(out, Ready)
        assert out.command.lineage.training_config["n"] == value  # type: ignore[attr-defined]
    else:
        assert "payload.lineage.training_config.n: " in message(out, "schema_violation")


def test_tiny_and_huge_finite_floats_are_kept() -> None:
    out = run(version(metrics={"a": 5e-324, "b": 1.7e308, "c": -0.0, "d": 3}))
    assert isinstance(out, Ready)
    assert out.command.metrics == {"a": 5e-324, "b": 1.7e308, "c": -0.0, "d": 3.0}  # type: ignore[attr-defined]


# --- 2. text --------------------------------------------------------------------------------------


def test_a_nul_in_a_description_is_rejected_naming_the_field() -> None:
    msg = message(run(env(payload={**MODEL, "description": "a\x00b"})), "schema_violation")
    assert msg.startswith("payload.description: ") and "NUL" in msg


def test_a_nul_in_a_key_is_rejected_naming_its_object() -> None:
    msg = message(run(env(payload={**MODEL, "tags": {"k\x00": "v"}})), "schema_violation")
    assert msg.startswith("payload.tags: key ")


def test_a_lone_surrogate_is_rejected() -> None:
    raw = raw_of(env(payload={**MODEL, "description": "<d>"}), d='"x\\udc80"')
    out = decode(S, raw, ALICE, "registry.commands", NOW)
    assert "surrogate" in message(out, "schema_violation")


def test_an_escaped_backslash_before_u0000_and_a_surrogate_pair_are_fine() -> None:
    out = run(env(payload={**MODEL, "description": "C:\\u0000 and 🚀"}))
    assert isinstance(out, Ready)
    assert out.command.description == "C:\\u0000 and 🚀"  # type: ignore[attr-defined]


def test_a_raw_nul_byte_is_not_json() -> None:
    raw = json.dumps(env()).encode().replace(b'"d"', b'"\x00"')
    out = decode(S, raw, ALICE, "registry.commands", NOW)
    assert isinstance(out, DeadLetter) and out.reason == "invalid_json"


# --- 2. types -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2", 2.0, True])
def test_schema_version_must_be_an_integer(value: Any) -> None:
    assert message(run(env(schema_version=value)), "schema_violation").startswith("schema_version")


@pytest.mark.parametrize("value", ["0.9", True, None, [0.9]])
def test_a_metric_must_be_a_number(value: Any) -> None:
    assert "payload.metrics.auc" in message(
        run(version(metrics={"auc": value})), "schema_violation"
    )


def test_a_submission_id_is_still_read_from_its_json_string() -> None:
    doc = env("ApproveSubmission", {"submission_id": "12345678-1234-5678-1234-567812345678"})
    assert isinstance(run(doc, CAROL), Ready)


# --- 2. issued_at ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issued_at",
    [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        (NOW + timedelta(seconds=S.command_max_future_s + 1)).isoformat(),
        (NOW - timedelta(seconds=S.command_max_age_s + 1)).isoformat(),
        "2026-12-02T11:59:00",
        "2026-12-02",
        "1764676740",
        1764676740,
        "yesterday",
    ],
    ids=["year-9999", "year-1", "ahead", "stale", "naive", "date", "digits", "number", "words"],
)
def test_issued_at_must_be_a_zoned_time_within_the_window(issued_at: Any) -> None:
    assert message(run(env(issued_at=issued_at)), "schema_violation").startswith("issued_at")


@pytest.mark.parametrize(
    "issued_at",
    [
        (NOW + timedelta(seconds=S.command_max_future_s - 1)).isoformat(),
        (NOW - timedelta(seconds=S.command_max_age_s - 1)).isoformat(),
        "2026-12-02T13:00:00+01:00",
        "2026-12-02T10:00:00.000000Z",
    ],
    ids=["slightly-ahead", "six-days-old", "offset", "fractions"],
)
def test_issued_at_within_the_window_is_accepted(issued_at: str) -> None:
    assert isinstance(run(env(issued_at=issued_at)), Ready)


# --- 2. duplicate keys ----------------------------------------------------------------------------


def test_a_duplicate_key_in_the_payload_is_rejected_naming_it() -> None:
    raw = json.dumps(env()).encode().replace(b'"name": "fraud"', b'"name": "fraud", "name": "x"')
    out = decode(S, raw, ALICE, "registry.commands", NOW)
    assert message(out, "schema_violation") == "payload: duplicate key 'name'"


def test_a_duplicate_key_deep_inside_is_rejected_naming_its_object() -> None:
    raw = json.dumps(env(payload={**MODEL, "tags": {"a": "1"}})).encode()
    raw = raw.replace(b'"a": "1"', b'"a": "1", "a": "2"')
    out = decode(S, raw, ALICE, "registry.commands", NOW)
    assert message(out, "schema_violation") == "payload.tags: duplicate key 'a'"


def test_a_duplicate_envelope_key_is_rejected_and_a_duplicate_command_id_dead_lettered() -> None:
    doc = env()
    raw = json.dumps(doc).encode()
    out = decode(S, raw.replace(b'"type"', b'"type": "X", "type"'), ALICE, "registry.commands", NOW)
    assert message(out, "schema_violation") == "<root>: duplicate key 'type'"
    twice = raw.replace(b'"command_id"', b'"command_id": "other", "command_id"')
    dead = decode(S, twice, ALICE, "registry.commands", NOW)
    assert isinstance(dead, DeadLetter) and dead.reason == "schema_violation"


# --- 2. topics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["governance.commands", "training.commands", "x", None])
def test_a_registry_command_elsewhere_than_registry_commands_is_refused(topic: str | None) -> None:
    raw = json.dumps(env()).encode()
    out = decode(S, raw, ALICE, topic, NOW)
    msg = message(out, "wrong_topic")
    assert "RegisterModel belongs on registry.commands" in msg


def test_a_governance_command_on_the_registry_topic_is_refused() -> None:
    doc = env(
        "SubmitForApproval",
        {"model_name": "m", "version": "1.0.0", "target_stage": "staging", "justification": "j"},
    )
    rejected(doc, "wrong_topic", topic="registry.commands")


def test_the_sender_is_known_before_the_topic_is_judged() -> None:
    rejected(env(), "unauthenticated", auth=None, topic="governance.commands")


# --- sizes and encodings --------------------------------------------------------------------------


def test_the_message_size_limit_is_a_setting() -> None:
    small = Settings(jwt_secret=S.jwt_secret, command_max_bytes=1024)
    raw = json.dumps(env(payload={**MODEL, "description": "x" * 2000})).encode()
    out = decode(small, raw, ALICE, "registry.commands", NOW)
    assert isinstance(out, DeadLetter) and out.reason == "too_large"
    assert isinstance(run(raw), Ready)


def test_a_huge_string_is_rejected_by_its_field_limit_not_by_a_crash() -> None:
    msg = message(run(env(payload={**MODEL, "description": "x" * 200_000})), "schema_violation")
    assert msg.startswith("payload.description: ")
    big_free = run(version(lineage={"training_config": {"notes": "x" * 200_000}}))
    assert isinstance(big_free, Ready)


@pytest.mark.parametrize("prefix_or_codec", ["bom", "utf-16", "utf-32", "latin-1"])
def test_only_plain_utf8_is_json_here(prefix_or_codec: str) -> None:
    text = json.dumps(env(payload={**MODEL, "description": "é"}), ensure_ascii=False)
    raw = (
        b"\xef\xbb\xbf" + text.encode()
        if prefix_or_codec == "bom"
        else text.encode(prefix_or_codec)
    )
    out = decode(S, raw, ALICE, "registry.commands", NOW)
    assert isinstance(out, DeadLetter) and out.reason == "invalid_json", out


def test_a_subject_with_a_nul_gets_a_storable_message() -> None:
    odd = "Bearer " + issue_token(S, "car\x00ol", ["approver"])
    out = rejected(env(), "forbidden", auth=odd)
    assert out.message is not None and "\x00" not in out.message and "car\\x00ol" in out.message

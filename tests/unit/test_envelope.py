"""DESIGN's event envelope hash chain, checked with independent code as an auditor would write it:
hash = sha256_hex(prev_hash + "\\n" + canonical_json(envelope without "hash"))."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.envelope import (
    GENESIS_HASH,
    EventEnvelope,
    Undecodable,
    canonical_json,
    read_published,
    seal,
    verify_chain,
    verify_published,
)

AGG = uuid.UUID("7d9f3c1e-2a4b-4c6d-8e0f-123456789abc")


def auditor_hash(prev_hash: str, envelope: dict[str, Any]) -> str:
    """Independent of the project's helpers: plain hashlib + json, straight from DESIGN."""
    body = {k: v for k, v in envelope.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + "\n" + canonical).encode("utf-8")).hexdigest()


def auditor_verify(envelopes: list[dict[str, Any]]) -> bool:
    prev = "0" * 64
    for n, env in enumerate(envelopes, start=1):
        if (
            env["version"] != n
            or env["prev_hash"] != prev
            or auditor_hash(prev, env) != env["hash"]
        ):
            return False
        prev = env["hash"]
    return True


def body(version: int, payload: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    return {
        "event_id": uuid.UUID(int=version),
        "type": "ModelRegistered" if version == 1 else "ModelMetadataUpdated",
        "schema_version": 1,
        "aggregate_type": "RegisteredModel",
        "aggregate_id": AGG,
        "version": version,
        "occurred_at": datetime(2026, 11, 27, 12, 0, version, tzinfo=UTC),
        "actor": "alice",
        "correlation_id": "corr-1",
        "causation_id": f"cmd-{version}",
        "payload": payload,
        "prev_hash": prev_hash,
    }


PAYLOADS: list[dict[str, Any]] = [
    {
        "name": "fraud",
        "description": "Modèle de détection — 模型 ✓",
        "intended_use": "scoring",
        "limitations": "none",
        "owner": "alice",
        "tags": {"équipe": "risque"},
    },
    {"description": "v2 ünïcødé 🚀"},
    {"tags": {"k": "v"}},
]


def chain(payloads: list[dict[str, Any]] = PAYLOADS) -> list[EventEnvelope]:
    out: list[EventEnvelope] = []
    prev = GENESIS_HASH
    for n, payload in enumerate(payloads, start=1):
        env = seal(body(n, payload, prev))
        out.append(env)
        prev = env.hash
    return out


def wire(env: EventEnvelope) -> dict[str, Any]:
    """The envelope as a consumer sees it on Kafka."""
    doc: dict[str, Any] = json.loads(env.to_bytes().decode("utf-8"))
    return doc


def test_genesis_is_64_zeros() -> None:
    assert GENESIS_HASH == "0" * 64
    assert chain()[0].prev_hash == "0" * 64


def test_each_hash_matches_independent_computation() -> None:
    envs = chain()
    prev = "0" * 64
    for env in envs:
        doc = wire(env)
        assert doc["prev_hash"] == prev
        assert doc["hash"] == auditor_hash(prev, doc)
        prev = doc["hash"]
    assert auditor_verify([wire(e) for e in envs])


def test_envelope_carries_exactly_the_design_fields() -> None:
    assert set(wire(chain()[0])) == {
        "event_id",
        "type",
        "schema_version",
        "aggregate_type",
        "aggregate_id",
        "version",
        "occurred_at",
        "actor",
        "correlation_id",
        "causation_id",
        "payload",
        "prev_hash",
        "hash",
    }


def test_non_ascii_is_hashed_as_raw_utf8_not_escaped() -> None:
    env = chain()[0]
    raw = env.to_bytes()
    assert "模型 ✓".encode() in raw and b"\\u" not in raw
    doc = wire(env)
    assert doc["payload"]["description"] == "Modèle de détection — 模型 ✓"
    assert env.hash == auditor_hash(GENESIS_HASH, doc)
    # escaping non-ASCII would give a different digest: the rule matters
    escaped = json.dumps(
        {k: v for k, v in doc.items() if k != "hash"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    assert hashlib.sha256((GENESIS_HASH + "\n" + escaped).encode()).hexdigest() != env.hash


def test_wire_bytes_roundtrip_keeps_the_hash_valid() -> None:
    envs = [EventEnvelope.from_bytes(e.to_bytes()) for e in chain()]
    assert envs == chain()
    assert verify_chain(envs) is None


def test_hand_built_envelope_with_auditor_hash_verifies() -> None:
    # An envelope written by other code (not seal) is accepted when its hash follows DESIGN.
    doc = wire(chain()[0])
    doc["payload"] = {**doc["payload"], "description": "écrit à la main"}
    doc["hash"] = auditor_hash(GENESIS_HASH, doc)
    env = EventEnvelope.model_validate(doc)
    assert env.computed_hash() == doc["hash"]
    assert verify_chain([env]) is None


def test_verify_chain_accepts_an_intact_chain_and_an_empty_one() -> None:
    assert verify_chain(chain()) is None
    assert verify_chain([]) is None


def test_verify_chain_detects_a_tampered_payload() -> None:
    envs = chain()
    envs[1] = envs[1].model_copy(update={"payload": {"description": "forged"}})
    brk = verify_chain(envs)
    assert brk is not None
    assert brk.version == 2
    assert brk.aggregate_id == str(AGG) and brk.aggregate_type == "RegisteredModel"
    assert "hash" in brk.reason
    assert not auditor_verify([wire(e) for e in envs])


def test_verify_chain_detects_a_tampered_envelope_field() -> None:
    envs = chain()
    envs[2] = envs[2].model_copy(update={"actor": "mallory"})
    brk = verify_chain(envs)
    assert brk is not None and brk.version == 3


def test_verify_chain_detects_a_broken_prev_hash_even_when_resealed() -> None:
    # The attacker rewrites event 2 and re-seals it: its own hash is consistent, the link is not.
    envs = chain()
    resealed = seal({**envs[1].model_dump(exclude={"hash"}), "prev_hash": "f" * 64})
    assert resealed.computed_hash() == resealed.hash
    envs[1] = resealed
    brk = verify_chain(envs)
    assert brk is not None
    assert brk.version == 2
    assert "prev_hash" in brk.reason
    assert not auditor_verify([wire(e) for e in envs])


def test_verify_chain_detects_a_first_event_not_chained_from_genesis() -> None:
    first = seal(body(1, PAYLOADS[0], "1" * 64))
    brk = verify_chain([first])
    assert brk is not None and brk.version == 1 and "prev_hash" in brk.reason


def test_verify_chain_detects_a_version_gap_naming_the_version() -> None:
    envs = chain()
    brk = verify_chain([envs[0], envs[2]])
    assert brk is not None
    assert brk.version == 3
    assert "2" in brk.reason  # the version that was expected


def test_verify_chain_detects_a_missing_first_event() -> None:
    brk = verify_chain(chain()[1:])
    assert brk is not None and brk.version == 2 and "1" in brk.reason


def test_seal_is_deterministic_for_the_same_body() -> None:
    b = body(1, PAYLOADS[0], GENESIS_HASH)
    assert seal(b).hash == seal(dict(b)).hash
    assert seal(b).hash != seal({**b, "actor": "bob"}).hash


@pytest.mark.parametrize(
    "actor",
    ["alice", 'quote " inside', 'fake ,"occurred_at":"x" member', "back\\slash\\", "é ☃ \n"],
)
def test_sealed_bytes_equal_the_canonical_json_of_the_fields(actor: str) -> None:
    # seal() derives the wire bytes from the hashed body; they must be exactly what a consumer
    # recomputes from the fields.
    env = seal({**body(1, PAYLOADS[0], GENESIS_HASH), "actor": actor})
    assert env.to_bytes() == canonical_json(env.to_json_dict())
    assert EventEnvelope.from_bytes(env.to_bytes()).computed_hash() == env.hash
    changed = env.model_copy(update={"actor": "mallory"})
    assert changed.to_bytes() == canonical_json(changed.to_json_dict())


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(JSON_VALUES)
@settings(max_examples=400)
def test_canonical_json_is_byte_for_byte_the_design_rule(value: Any) -> None:
    """Whatever path canonical_json takes (orjson, or the json module for floats and big
    integers), its bytes are those of DESIGN's rule."""
    try:
        reference = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 encoding, for either
        with pytest.raises((UnicodeEncodeError, TypeError)):
            canonical_json(value)
        return
    assert canonical_json(value) == reference


@pytest.mark.parametrize("value", [1e-05, 2.3523573848418126e-09, {"m": {"loss": 7e-07}}, [2**64]])
def test_canonical_json_spells_floats_and_big_integers_as_the_json_module(value: Any) -> None:
    reference = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == reference.encode()


def test_canonical_json_refuses_what_the_json_module_refuses() -> None:
    for value in ({"at": datetime(2026, 1, 1, tzinfo=UTC)}, {"id": AGG}):
        with pytest.raises(TypeError):
            canonical_json(value)


# --- verifying from the published JSON ------------------------------------------------------------


def hand_built(occurred_at: str = "2026-01-01T00:00:00.000000Z") -> bytes:
    """An event written by other code: its timestamp is spelled as no pydantic model spells it,
    and its hash follows DESIGN's rule over exactly this JSON."""
    doc: dict[str, Any] = {
        "event_id": "3f0c8a52-7d55-4b8e-9a39-2b1c6f0e8d11",
        "type": "ModelRegistered",
        "schema_version": 1,
        "aggregate_type": "RegisteredModel",
        "aggregate_id": str(AGG),
        "version": 1,
        "occurred_at": occurred_at,
        "actor": "alice",
        "correlation_id": "corr-1",
        "causation_id": "cmd-1",
        "payload": {"name": "fraud", "metrics": {"big": 1e16, "neg": -0.0}},
        "prev_hash": GENESIS_HASH,
    }
    doc["hash"] = auditor_hash(GENESIS_HASH, doc)
    return json.dumps(doc, ensure_ascii=False).encode()


def test_the_projects_verifier_accepts_what_an_outside_verifier_accepts() -> None:
    raw = hand_built()
    assert auditor_verify([json.loads(raw)])
    assert verify_published([read_published(raw)]) is None
    # the model path respells the timestamp, so re-serialising could never verify it
    assert EventEnvelope.from_bytes(raw).computed_hash() != json.loads(raw)["hash"]


def test_the_projects_verifier_rejects_a_one_byte_change() -> None:
    raw = hand_built()
    changed = raw.replace(b"00.000000Z", b"00.000001Z")
    assert len(changed) == len(raw) and changed != raw
    brk = verify_published([read_published(changed)])
    assert brk is not None and brk.version == 1 and "hash" in brk.reason
    assert not auditor_verify([json.loads(changed)])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xff", "not UTF-8 JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"version": "1"}', "'aggregate_type' is missing"),
        (b"[" * 100_000 + b"]" * 100_000, "too deep"),
    ],
)
def test_read_published_names_why_bytes_are_not_an_envelope(raw: bytes, why: str) -> None:
    with pytest.raises(Undecodable, match=why):
        read_published(raw)


def test_verify_chain_and_verify_published_agree_on_sealed_events() -> None:
    envs = chain()
    assert verify_published(read_published(e.to_bytes()) for e in envs) is None
    forged = envs[1].model_copy(update={"actor": "mallory"})
    brk = verify_published(read_published(e.to_bytes()) for e in [envs[0], forged])
    assert brk == verify_chain([envs[0], forged])

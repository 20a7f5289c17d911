"""Fuzzing the door: whatever the bytes, headers and topic, decode() and process_batch() never
raise, and each message gets exactly one outcome: a result or a dead letter, with a known reason.
Nothing reaches the catch-alls (decode_error, handler_error): every refusal is a decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.catalog import COMMAND_TOPICS
from commands.decoding import DeadLetter, Ready, decode
from commands.service import Incoming
from events.results import CommandResult
from tests.strategies import JSON, Step, histories, message, mutated
from tests.unit.harness import SETTINGS, Harness
from tests.unit.test_poison import ParsingStore

NOW = datetime(2026, 11, 27, 12, 0, 30, tzinfo=UTC)
DEAD = {"invalid_json", "schema_violation", "too_large", "too_deep"}
REJECTED = {
    "unknown_type",
    "schema_violation",
    "unauthenticated",
    "forbidden",
    "wrong_topic",
    "too_deep",
    "too_large",
    # reached only by commands the door lets through, for their domain
    "not_found",
    "conflict",
    "invariant_violation",
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOPICS = st.sampled_from([*COMMAND_TOPICS.values(), "commands.dlq", None])
H = Harness()
AUTH = st.sampled_from(
    [None, "", "Bearer junk", f"Bearer {H.token('alice')}", f"Bearer {H.token('bob')}"]
)


def check_one(item: Incoming, out: Any) -> None:
    if isinstance(out, DeadLetter):
        assert out.reason in DEAD, out
        return
    if isinstance(out, Ready):
        return
    assert isinstance(out, CommandResult), out
    assert out.status == "accepted" or out.reason_code in REJECTED, out
    assert out.message is None or "\x00" not in out.message
    assert out.command_id == json.loads(item.value or b"")["command_id"]  # never a guess


def decode_one(item: Incoming) -> Any:
    out = decode(SETTINGS, item.value, item.authorization, item.topic, NOW)
    check_one(item, out)
    return out


@FUZZ
@given(st.binary(max_size=3000), AUTH, TOPICS)
def test_arbitrary_bytes(raw: bytes, auth: str | None, topic: str | None) -> None:
    decode_one(Incoming(raw, auth, topic))


@FUZZ
@given(
    JSON | st.dictionaries(st.sampled_from(["command_id", "type", "payload", "x"]), JSON),
    AUTH,
    TOPICS,
)
def test_arbitrary_json(doc: Any, auth: str | None, topic: str | None) -> None:
    decode_one(Incoming(json.dumps(doc).encode(), auth, topic))


@FUZZ
@given(st.floats() | st.integers(), st.text(), AUTH)
def test_envelopes_with_any_number_or_text(
    number: float | int, text: str, auth: str | None
) -> None:
    doc = {
        "command_id": "c-1",
        "type": "RegisterModelVersion",
        "schema_version": 1,
        "issued_at": NOW.isoformat(),
        "payload": {"model_name": "m", "version": "1.0.0", "metrics": {"m": number}, "x": text},
    }
    raw = json.dumps(doc).encode("utf-8", "surrogatepass")
    decode_one(Incoming(raw, auth, "registry.commands"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_envelopes_each_get_exactly_one_outcome(data: st.DataObject) -> None:
    h = Harness(store=ParsingStore())
    steps: list[Step] = data.draw(histories())
    items: list[Incoming] = []
    for step in steps:
        items.append(message(h, step))
        items.append(data.draw(mutated(h, step)))
    outs = h.batch(*items)
    assert len(outs) == len(items)
    for item, out in zip(items, outs, strict=True):
        assert not isinstance(out, Ready)
        if isinstance(out, DeadLetter):
            assert out.reason in DEAD, out
        else:
            assert isinstance(out, CommandResult) and out.command_id in (item.value or b"").decode(
                "utf-8", "replace"
            )
    accepted = sum(isinstance(o, CommandResult) and o.status == "accepted" for o in outs)
    rejected = sum(isinstance(o, CommandResult) and o.status == "rejected" for o in outs)
    dead = sum(isinstance(o, DeadLetter) for o in outs)
    assert accepted + rejected + dead == len(items)
    # the unmutated history is valid: its first command (RegisterModel) always goes through
    assert isinstance(outs[0], CommandResult) and outs[0].status == "accepted", outs[0]

"""Poison messages never stop a partition: process_batch gives every message exactly one outcome
and never raises, and what it accepts can be read back by every later command. The store here
reads events back through their bytes, as the Postgres store does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from commands.decoding import DeadLetter
from commands.service import Incoming
from domain.base import Meta
from domain.registry import ModelVersion, version_id
from events.envelope import EventEnvelope, read_published, verify_published
from events.registry import ModelVersionRegistered
from events.results import CommandResult
from infra.memory_store import InMemoryEventStore
from tests.unit.harness import SETTINGS, Harness, assert_rejected


class ParsingStore(InMemoryEventStore):
    """Loads each event from its stored bytes, as PostgresEventStore does."""

    def load(self, aggregate_id: UUID) -> list[EventEnvelope]:
        return [EventEnvelope.from_bytes(e.to_bytes()) for e in super().load(aggregate_id)]

    def load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, list[EventEnvelope]]:
        return {a: self.load(a) for a in aggregate_ids}


@pytest.fixture
def h() -> Harness:
    h = Harness(store=ParsingStore())
    h.register_model()
    return h


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def edited(m: Incoming, old: bytes, new: bytes) -> Incoming:
    assert old in (m.value or b"")
    return Incoming((m.value or b"").replace(old, new, 1), m.authorization, m.topic)


def submit(h: Harness, version: str) -> Incoming:
    payload = {
        "model_name": "fraud",
        "version": version,
        "target_stage": "staging",
        "justification": "j",
    }
    return h.msg("alice", "SubmitForApproval", payload)


def test_a_1000_deep_command_gets_one_outcome_and_its_neighbours_go_through(h: Harness) -> None:
    deep = b'{"training_config": {"x": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    bad = edited(
        h.msg("alice", "RegisterModelVersion", h.version_payload(version="9.9.9")),
        b'"lineage": {}',
        b'"lineage": ' + deep,
    )
    outs = h.batch(
        h.msg("alice", "RegisterModelVersion", h.version_payload()), bad, submit(h, "1.0.0")
    )
    assert len(outs) == 3
    reason = outs[1].reason if isinstance(outs[1], DeadLetter) else outs[1].reason_code
    assert reason == "too_deep"  # dead-lettered where the parser gives up, else rejected
    assert [o.status for o in (outs[0], outs[2]) if isinstance(o, CommandResult)] == [
        "accepted"
    ] * 2


def test_a_250_deep_lineage_is_refused_so_a_later_submission_still_works(h: Harness) -> None:
    res = h.send("alice", "RegisterModelVersion", h.version_payload(training_config=nested(250)))
    assert_rejected(res, "too_deep")
    h.register_version("1.0.0")
    (out,) = h.batch(submit(h, "1.0.0"))
    assert isinstance(out, CommandResult) and out.status == "accepted"


def test_an_unreadable_stored_event_dead_letters_only_the_commands_that_load_it(h: Harness) -> None:
    # An event written before the limits existed, too deep for pydantic's JSON parser.
    legacy = ModelVersion(version_id("fraud", "0.0.1"))
    fields = {
        **h.version_payload(version="0.0.1", training_config=nested(250)),
        "registered_by": "alice",
    }
    legacy.record(ModelVersionRegistered(**fields), Meta("alice", "c", "c", h.clock()))
    h.store.commit([("registry", legacy.pending[0])], [])
    h.register_version("1.0.0")
    outs = h.batch(submit(h, "0.0.1"), submit(h, "1.0.0"))
    assert isinstance(outs[0], DeadLetter) and outs[0].reason == "handler_error"
    assert isinstance(outs[1], CommandResult) and outs[1].status == "accepted"
    # the verifier reads it by DESIGN's rule, with the json module: its chain holds
    raw = legacy.pending[0].to_bytes()
    assert verify_published([read_published(raw)]) is None


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1e400"])
def test_non_finite_metrics_are_refused_and_the_version_stays_usable(
    h: Harness, literal: bytes
) -> None:
    bad = edited(
        h.msg("alice", "RegisterModelVersion", h.version_payload()),
        b'{"auc": 0.91}',
        b'{"auc": ' + literal + b"}",
    )
    (out,) = h.batch(bad)
    assert_rejected(out, "schema_violation")
    assert out.message and out.message.startswith("payload.metrics.auc")  # type: ignore[union-attr]
    h.register_version("1.0.0")
    assert h.transition("1.0.0", "staging").status == "accepted"
    (registered,) = [e for e in h.log() if e.type == "ModelVersionRegistered"]
    assert registered.payload["metrics"] == {"auc": 0.91}


def test_a_nul_in_a_description_is_refused_and_nothing_is_stored(h: Harness) -> None:
    before = len(h.log())
    res = h.send("alice", "UpdateModelMetadata", {"name": "fraud", "description": "a\x00b"})
    assert_rejected(res, "schema_violation")
    assert len(h.log()) == before


def test_string_versions_far_future_dates_duplicate_keys_and_wrong_topics_are_refused(
    h: Harness,
) -> None:
    def update(text: str) -> Incoming:
        return h.msg("alice", "UpdateModelMetadata", {"name": "fraud", "description": text})

    future = (h.now + timedelta(days=3650)).isoformat().encode()
    m = update("b")
    outs = h.batch(
        edited(update("a"), b'"schema_version": 1', b'"schema_version": "1"'),
        edited(m, json.dumps(h.now.isoformat()).encode(), b'"' + future + b'"'),
        edited(update("c"), b'"description"', b'"description": "d", "description"'),
        Incoming(update("e").value, update("e").authorization, "governance.commands"),
        Incoming(update("f").value, update("f").authorization, "training.commands"),
    )
    reasons = [o.reason_code if isinstance(o, CommandResult) else o for o in outs]
    assert reasons == ["schema_violation"] * 3 + ["wrong_topic"] * 2
    assert [e.type for e in h.log()] == ["ModelRegistered"]


def test_a_stored_result_comes_first_even_after_the_issued_at_window(h: Harness) -> None:
    m = h.msg("alice", "RegisterModelVersion", h.version_payload())
    (first,) = h.batch(m)
    assert isinstance(first, CommandResult) and first.status == "accepted"
    h.now += timedelta(seconds=SETTINGS.command_max_age_s + 3600)  # an outage of a week and more
    assert h.batch(m) == [first]
    fresh = h.msg("alice", "RegisterModelVersion", h.version_payload(version="2.0.0"))
    late = edited(
        fresh,
        json.dumps(h.now.isoformat()).encode(),
        json.dumps((h.now - timedelta(days=8)).isoformat()).encode(),
    )
    (stale,) = h.batch(late)
    assert_rejected(stale, "schema_violation")
    assert h.batch(late) == [stale]  # remembered: the same command_id gets the same answer


def test_a_command_whose_event_would_outgrow_a_kafka_message_is_refused(h: Harness) -> None:
    # 1e15 is 4 bytes in the command and 18 ("1000000000000000.0") in the event.
    payload = h.version_payload(training_config={"grid": "<grid>"})
    m = h.msg("alice", "RegisterModelVersion", payload)
    grid = b"[" + b",".join([b"1e15"] * 50_000) + b"]"
    big = edited(m, b'"<grid>"', grid)
    assert len(big.value or b"") < SETTINGS.command_max_bytes
    (out,) = h.batch(big)
    assert_rejected(out, "too_large")
    assert "event_max_bytes" in (out.message or "")  # type: ignore[union-attr]
    assert [e.type for e in h.log()] == ["ModelRegistered"]
    h.register_version("1.0.0")  # the batch's unit of work was left clean

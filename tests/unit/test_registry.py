"""Registry through process_batch: outcomes and the exact events each command stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from commands.base import Command
from commands.decoding import DeadLetter
from commands.handlers import HANDLERS, Deps
from commands.registry import UpdateModelMetadata
from domain.errors import InvariantViolation
from domain.registry import RegisteredModel
from events.envelope import EventEnvelope
from events.results import CommandResult
from infra.memory_store import InMemoryEventStore
from tests.unit.harness import (
    SHA_A,
    SHA_B,
    Harness,
    assert_rejected,
    dataset_id,
    model_id,
    version_id,
)

MODEL = {
    "name": "fraud",
    "description": "Fraud scorer",
    "intended_use": "card fraud",
    "limitations": "EU only",
}


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def hv(h: Harness) -> Harness:
    """A model with version 1.0.0 registered."""
    h.register_model()
    h.register_version("1.0.0")
    return h


def stages(h: Harness, *versions: str) -> list[str]:
    out = []
    for v in versions:
        transitions = [e for e in h.stream(version_id("fraud", v)) if e.type == "StageTransitioned"]
        out.append(transitions[-1].payload["to_stage"] if transitions else "development")
    return out


def production(h: Harness) -> str | None:
    model = RegisteredModel.rehydrate(model_id("fraud"), h.stream(model_id("fraud")))
    return model.production_version


# --- models ---------------------------------------------------------------------------------------


def test_register_model_defaults_owner_to_the_caller(h: Harness) -> None:
    res = h.ok("alice", "RegisterModel", MODEL)
    assert h.events_of(res) == [
        ("RegisteredModel", "ModelRegistered", {**MODEL, "owner": "alice", "tags": {}})
    ]
    assert res.events[0].aggregate_id == model_id("fraud") and res.events[0].version == 1
    env = h.stream(model_id("fraud"))[0]
    assert (env.actor, env.causation_id, env.correlation_id) == (
        "alice",
        res.command_id,
        res.command_id,
    )


def test_register_model_v1_payload_is_upcast_end_to_end(h: Harness) -> None:
    v1 = {k: v for k, v in MODEL.items() if k != "intended_use"} | {
        "purpose": "legacy use",
        "owner": "team-x",
    }
    res = h.send("alice", "RegisterModel", v1, schema_version=1)
    assert res.status == "accepted", res
    ((_, _, payload),) = h.events_of(res)
    assert payload["intended_use"] == "legacy use" and payload["owner"] == "team-x"
    assert "purpose" not in payload


def test_registering_a_model_twice_is_a_conflict(h: Harness) -> None:
    h.register_model()
    assert_rejected(h.send("alice", "RegisterModel", MODEL), "conflict")
    assert len(h.stream(model_id("fraud"))) == 1


def test_update_metadata_of_an_unknown_model_is_not_found(h: Harness) -> None:
    assert_rejected(
        h.send("alice", "UpdateModelMetadata", {"name": "ghost", "description": "x"}), "not_found"
    )
    assert h.log() == []


def test_update_metadata_records_only_what_changes(h: Harness) -> None:
    h.register_model()
    res = h.ok("alice", "UpdateModelMetadata", {"name": "fraud", "limitations": "EU and UK"})
    assert h.events_of(res) == [
        (
            "RegisteredModel",
            "ModelMetadataUpdated",
            {"description": None, "intended_use": None, "limitations": "EU and UK", "tags": None},
        )
    ]
    assert_rejected(
        h.send("alice", "UpdateModelMetadata", {"name": "fraud"}),
        "invariant_violation",
        "empty_update",
    )


# --- datasets and versions ------------------------------------------------------------------------


def test_version_with_matching_dataset_records_lineage(hv: Harness) -> None:
    hv.register_dataset(checksum=SHA_A)
    payload = hv.version_payload(
        "fraud",
        "1.1.0",
        parent_version="1.0.0",
        dataset={"name": "txns", "version": "1.0.0", "checksum": "sha256:" + SHA_A},
    )
    res = hv.ok("alice", "RegisterModelVersion", payload)
    ((agg, etype, body),) = hv.events_of(res)
    assert (agg, etype) == ("ModelVersion", "ModelVersionRegistered")
    assert body["lineage"]["parent_version"] == "1.0.0"
    assert body["lineage"]["dataset"] == {"name": "txns", "version": "1.0.0", "checksum": SHA_A}
    assert body["artifact"]["sha256"] == SHA_B and body["registered_by"] == "alice"


def test_dataset_checksum_mismatch(hv: Harness) -> None:
    hv.register_dataset(checksum=SHA_A)
    before = len(hv.log())
    payload = hv.version_payload(
        "fraud", "1.1.0", dataset={"name": "txns", "version": "1.0.0", "checksum": SHA_B}
    )
    res = hv.send("alice", "RegisterModelVersion", payload)
    assert_rejected(res, "invariant_violation", "dataset_checksum_mismatch")
    assert len(hv.log()) == before
    assert hv.store.load(version_id("fraud", "1.1.0")) == []


def test_unknown_dataset_parent_or_model_is_not_found(hv: Harness) -> None:
    bad_dataset = hv.version_payload(
        "fraud", "1.1.0", dataset={"name": "nope", "version": "1.0.0", "checksum": SHA_A}
    )
    assert_rejected(hv.send("alice", "RegisterModelVersion", bad_dataset), "not_found")
    bad_parent = hv.version_payload("fraud", "1.1.0", parent_version="0.9.0")
    assert_rejected(hv.send("alice", "RegisterModelVersion", bad_parent), "not_found")
    assert_rejected(
        hv.send("alice", "RegisterModelVersion", hv.version_payload("ghost", "1.0.0")), "not_found"
    )


def test_duplicate_dataset_and_version_are_conflicts(hv: Harness) -> None:
    hv.register_dataset()
    assert_rejected(
        hv.send(
            "alice",
            "RegisterDataset",
            {"name": "txns", "version": "1.0.0", "uri": "s3://x", "checksum": SHA_B},
        ),
        "conflict",
    )
    assert len(hv.stream(dataset_id("txns", "1.0.0"))) == 1
    assert_rejected(
        hv.send("alice", "RegisterModelVersion", hv.version_payload("fraud", "1.0.0")), "conflict"
    )


# --- stages ---------------------------------------------------------------------------------------


def test_promotion_without_approval_is_refused(hv: Harness) -> None:
    assert_rejected(
        hv.transition("1.0.0", "production"), "invariant_violation", "approval_required"
    )
    assert stages(hv, "1.0.0") == ["development"]


def test_staging_and_back_need_no_approval(hv: Harness) -> None:
    assert hv.transition("1.0.0", "staging").status == "accepted"
    assert_rejected(hv.transition("1.0.0", "staging"), "invariant_violation", "already_in_stage")
    assert hv.transition("1.0.0", "development").status == "accepted"


def test_second_production_version_archives_the_first(hv: Harness) -> None:
    hv.promote("1.0.0")
    hv.register_version("2.0.0")
    hv.approved_for_production("2.0.0")
    res = hv.transition("2.0.0", "production")
    assert res.status == "accepted"
    assert hv.grouped(res) == {
        version_id("fraud", "1.0.0"): [
            (
                "StageTransitioned",
                {
                    "model_name": "fraud",
                    "version": "1.0.0",
                    "from_stage": "production",
                    "to_stage": "archived",
                    "reason": "superseded by 2.0.0",
                },
            )
        ],
        version_id("fraud", "2.0.0"): [
            (
                "StageTransitioned",
                {
                    "model_name": "fraud",
                    "version": "2.0.0",
                    "from_stage": "development",
                    "to_stage": "production",
                    "reason": "",
                },
            )
        ],
        model_id("fraud"): [
            ("ProductionVersionChanged", {"version": "2.0.0", "previous_version": "1.0.0"})
        ],
    }
    assert stages(hv, "1.0.0", "2.0.0") == ["archived", "production"]
    assert production(hv) == "2.0.0"


def test_rollback_restores_the_previous_version_and_archives_the_current(hv: Harness) -> None:
    hv.promote("1.0.0")
    hv.register_version("2.0.0")
    hv.promote("2.0.0")
    res = hv.send("erin", "RollbackProduction", {"model_name": "fraud", "reason": "auc dropped"})
    assert res.status == "accepted", res
    assert hv.grouped(res) == {
        version_id("fraud", "2.0.0"): [
            (
                "StageTransitioned",
                {
                    "model_name": "fraud",
                    "version": "2.0.0",
                    "from_stage": "production",
                    "to_stage": "archived",
                    "reason": "rolled back: auc dropped",
                },
            )
        ],
        version_id("fraud", "1.0.0"): [
            (
                "StageTransitioned",
                {
                    "model_name": "fraud",
                    "version": "1.0.0",
                    "from_stage": "archived",
                    "to_stage": "production",
                    "reason": "restored: auc dropped",
                },
            )
        ],
        model_id("fraud"): [
            (
                "ProductionRolledBack",
                {"from_version": "2.0.0", "to_version": "1.0.0", "reason": "auc dropped"},
            )
        ],
    }
    assert stages(hv, "1.0.0", "2.0.0") == ["production", "archived"]
    assert production(hv) == "1.0.0"
    # nothing older to go back to now
    assert_rejected(
        hv.send("erin", "RollbackProduction", {"model_name": "fraud", "reason": "again"}),
        "invariant_violation",
        "no_previous_production",
    )


def test_rollback_without_production_is_refused(hv: Harness) -> None:
    assert_rejected(
        hv.send("erin", "RollbackProduction", {"model_name": "fraud", "reason": "r"}),
        "invariant_violation",
        "no_production",
    )
    hv.promote("1.0.0")
    assert_rejected(
        hv.send("erin", "RollbackProduction", {"model_name": "fraud", "reason": "r"}),
        "invariant_violation",
        "no_previous_production",
    )
    assert_rejected(
        hv.send("erin", "RollbackProduction", {"model_name": "ghost", "reason": "r"}), "not_found"
    )


def test_archived_version_cannot_be_promoted(hv: Harness) -> None:
    hv.approved_for_production("1.0.0")
    res = hv.send(
        "erin", "ArchiveModelVersion", {"model_name": "fraud", "version": "1.0.0", "reason": "old"}
    )
    assert hv.events_of(res) == [
        (
            "ModelVersion",
            "StageTransitioned",
            {
                "model_name": "fraud",
                "version": "1.0.0",
                "from_stage": "development",
                "to_stage": "archived",
                "reason": "old",
            },
        )
    ]
    assert_rejected(hv.transition("1.0.0", "production"), "invariant_violation", "archived_version")
    assert_rejected(hv.transition("1.0.0", "staging"), "invariant_violation", "archived_version")
    assert_rejected(
        hv.send(
            "alice",
            "SubmitForApproval",
            {
                "model_name": "fraud",
                "version": "1.0.0",
                "target_stage": "production",
                "justification": "j",
            },
        ),
        "invariant_violation",
        "archived_version",
    )
    assert_rejected(
        hv.send("erin", "ArchiveModelVersion", {"model_name": "fraud", "version": "1.0.0"}),
        "invariant_violation",
        "archived_version",
    )


def test_superseded_version_cannot_be_promoted_again(hv: Harness) -> None:
    hv.promote("1.0.0")
    hv.register_version("2.0.0")
    hv.promote("2.0.0")
    assert_rejected(hv.transition("1.0.0", "production"), "invariant_violation", "archived_version")


def test_production_version_cannot_be_archived_directly(hv: Harness) -> None:
    hv.promote("1.0.0")
    assert_rejected(
        hv.send("erin", "ArchiveModelVersion", {"model_name": "fraud", "version": "1.0.0"}),
        "invariant_violation",
        "archive_production",
    )
    assert_rejected(hv.transition("1.0.0", "archived"), "invariant_violation", "archive_production")
    assert_rejected(hv.transition("1.0.0", "staging"), "invariant_violation", "illegal_transition")
    assert production(hv) == "1.0.0"


def test_transition_of_unknown_version_is_not_found(hv: Harness) -> None:
    assert_rejected(hv.transition("9.9.9", "staging"), "not_found")
    assert_rejected(hv.transition("1.0.0", "staging", model="ghost"), "not_found")


# --- idempotency ----------------------------------------------------------------------------------


def test_same_command_id_three_times_in_one_batch_and_across_batches(h: Harness) -> None:
    msg = h.msg("alice", "RegisterModel", MODEL, command_id="register-fraud-once")
    outs = h.batch(msg, msg, msg)
    assert len(outs) == 3
    assert outs[0] == outs[1] == outs[2]
    assert isinstance(outs[0], CommandResult) and outs[0].status == "accepted"
    assert len(h.log()) == 1
    again = h.batch(msg, msg, msg)
    assert again == outs
    assert h.batch(msg) == [outs[0]]
    assert len(h.log()) == 1
    assert h.store.find_results(["register-fraud-once"]) == {"register-fraud-once": outs[0]}


def test_a_repeated_rejection_gives_the_same_answer_even_after_the_world_changed(
    h: Harness,
) -> None:
    update = h.msg(
        "alice", "UpdateModelMetadata", {"name": "fraud", "description": "new"}, command_id="upd-1"
    )
    (first,) = h.batch(update)
    assert_rejected(first, "not_found")
    h.register_model()
    assert h.batch(update) == [first]
    assert [e.type for e in h.log()] == ["ModelRegistered"]


def test_same_command_id_with_a_different_body_gets_the_first_result(h: Harness) -> None:
    first = h.ok("alice", "RegisterModel", MODEL, command_id="cid-reuse")
    second = h.send("alice", "RegisterModel", {**MODEL, "name": "other"}, command_id="cid-reuse")
    assert second == first
    assert h.store.load(model_id("other")) == []


# --- batches --------------------------------------------------------------------------------------


def test_every_message_of_a_batch_gets_exactly_one_outcome(h: Harness) -> None:
    from commands.service import Incoming

    good = h.msg("alice", "RegisterModel", MODEL)
    unauth = Incoming(good.value, None, good.topic)
    outs = h.batch(
        Incoming(b"{junk", good.authorization, good.topic),
        unauth,
        good,
        h.msg("alice", "UpdateModelMetadata", {"name": "fraud", "description": "same batch"}),
    )
    assert len(outs) == 4
    assert isinstance(outs[0], DeadLetter) and outs[0].reason == "invalid_json"
    # the unauthenticated copy shares the command_id of `good`, but an answer given before we know
    # the sender is not remembered: it cannot squat the real command's id
    assert_rejected(outs[1], "unauthenticated")
    assert isinstance(outs[2], CommandResult) and outs[2].status == "accepted"
    assert isinstance(outs[3], CommandResult) and outs[3].status == "accepted"
    assert [e.type for e in h.store.load(model_id("fraud"))] == [
        "ModelRegistered",
        "ModelMetadataUpdated",
    ]


def test_commands_in_one_batch_see_each_others_effects(h: Harness) -> None:
    outs = h.batch(
        h.msg("alice", "RegisterModel", MODEL),
        h.msg("alice", "RegisterModelVersion", h.version_payload("fraud", "1.0.0")),
        h.msg("alice", "UpdateModelMetadata", {"name": "fraud", "description": "v2"}),
        h.msg(
            "erin",
            "TransitionStage",
            {"model_name": "fraud", "version": "1.0.0", "stage": "staging"},
        ),
    )
    assert all(isinstance(o, CommandResult) and o.status == "accepted" for o in outs), outs
    assert [e.version for e in h.stream(model_id("fraud"))] == [1, 2]
    assert [e.version for e in h.stream(version_id("fraud", "1.0.0"))] == [1, 2]


def test_a_handler_failing_midway_leaves_no_events_of_its_own(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.register_model()
    real = HANDLERS[UpdateModelMetadata]

    def records_then_fails(cmd: Command, *, deps: Deps) -> None:
        # records ModelMetadataUpdated on the model, then fails for "boom"
        real(cmd, deps=deps)
        assert isinstance(cmd, UpdateModelMetadata)
        if cmd.description == "boom":
            raise InvariantViolation("failed after recording an event", "test_failure")

    monkeypatch.setitem(HANDLERS, UpdateModelMetadata, records_then_fails)
    outs = h.batch(
        h.msg("alice", "UpdateModelMetadata", {"name": "fraud", "description": "one"}),
        h.msg("alice", "UpdateModelMetadata", {"name": "fraud", "description": "boom"}),
        h.msg("alice", "UpdateModelMetadata", {"name": "fraud", "description": "two"}),
        h.msg("alice", "RegisterModel", {**MODEL, "name": "other"}),
    )
    assert [o.status for o in outs if isinstance(o, CommandResult)] == [
        "accepted",
        "rejected",
        "accepted",
        "accepted",
    ]
    assert_rejected(outs[1], "invariant_violation", "test_failure")
    stream = h.stream(model_id("fraud"))  # chain verified: no gap where "boom" was
    assert [(e.version, e.payload.get("description")) for e in stream] == [
        (1, "Fraud scorer"),
        (2, "one"),
        (3, "two"),
    ]
    assert [r.version for r in outs[2].events] == [3]  # type: ignore[union-attr]
    assert all(e.payload.get("description") != "boom" for e in h.log())
    assert len(h.stream(model_id("other"))) == 1


class RacingStore(InMemoryEventStore):
    """Lets another writer commit first, right before this batch's first commit."""

    def __init__(self) -> None:
        super().__init__()
        self.race: Any = None

    def commit(
        self, events: Sequence[tuple[str, EventEnvelope]], results: Sequence[CommandResult]
    ) -> None:
        race, self.race = self.race, None
        if race is not None:
            race()
        super().commit(events, results)


def test_a_concurrent_writer_loses_no_update_and_no_neighbour_is_rejected() -> None:
    store = RacingStore()
    h = Harness(store=store)
    other = Harness(store=store)
    h.register_model()
    store.race = lambda: other.ok(
        "alice", "UpdateModelMetadata", {"name": "fraud", "description": "theirs"}
    )
    mine = h.msg(
        "alice",
        "UpdateModelMetadata",
        {"name": "fraud", "description": "mine"},
        command_id="mine-1",
    )
    outs = h.batch(mine, h.msg("alice", "RegisterModel", {**MODEL, "name": "other"}), mine)
    assert all(isinstance(o, CommandResult) and o.status == "accepted" for o in outs), outs
    assert outs[0] == outs[2]
    assert [e.payload.get("description") for e in h.stream(model_id("fraud"))] == [
        "Fraud scorer",
        "theirs",
        "mine",
    ]
    assert len(h.stream(model_id("other"))) == 1
    assert [e.payload.get("description") for e in h.log()].count("mine") == 1

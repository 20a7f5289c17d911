"""Governance through process_batch: submissions, approvals, rejections and what they unlock."""

from __future__ import annotations

import uuid

import pytest

from domain.governance import submission_id_for
from tests.unit.harness import Harness, assert_rejected, model_id, version_id


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.register_model()
    h.register_version("1.0.0")
    return h


def test_submission_records_who_asked_and_how_many_approvals_it_needs(h: Harness) -> None:
    cid = "submit-prod-1"
    res = h.ok(
        "alice",
        "SubmitForApproval",
        {
            "model_name": "fraud",
            "version": "1.0.0",
            "target_stage": "production",
            "justification": "why",
        },
        command_id=cid,
    )
    ((agg, etype, payload),) = h.events_of(res)
    assert (agg, etype) == ("Submission", "SubmissionCreated")
    assert payload["submission_id"] == str(submission_id_for(cid))
    assert payload["submitted_by"] == "alice"
    assert payload["required_approvals"] == 2
    staging = h.submit(stage="staging")
    assert h.stream(staging)[0].payload["required_approvals"] == 1


def test_self_approval_is_an_invariant_violation(h: Harness) -> None:
    sub = h.submit(user="alice")
    before = len(h.log())
    res = h.approve(sub, "alice")
    assert_rejected(res, "invariant_violation", "self_approval")
    assert len(h.log()) == before
    assert_rejected(h.reject(sub, "alice"), "invariant_violation", "self_approval")


def test_production_needs_two_distinct_approvers(h: Harness) -> None:
    sub = h.submit()
    first = h.approve(sub, "bob")
    assert first.status == "accepted"
    assert h.events_of(first) == [
        ("Submission", "ApprovalRecorded", {"approver": "bob", "comments": "lgtm"})
    ]
    assert [e.type for e in h.stream(version_id("fraud", "1.0.0"))] == ["ModelVersionRegistered"]

    assert_rejected(h.transition("1.0.0", "production"), "invariant_violation", "approval_required")

    second = h.approve(sub, "carol")
    assert second.status == "accepted"
    assert h.events_of(second) == [
        ("Submission", "ApprovalRecorded", {"approver": "carol", "comments": "lgtm"}),
        ("Submission", "SubmissionApproved", {"approvers": ["bob", "carol"]}),
        (
            "ModelVersion",
            "VersionApproved",
            {
                "submission_id": str(sub),
                "target_stage": "production",
                "approvers": ["bob", "carol"],
            },
        ),
    ]

    promoted = h.transition("1.0.0", "production")
    assert promoted.status == "accepted"
    assert h.grouped(promoted) == {
        version_id("fraud", "1.0.0"): [
            (
                "StageTransitioned",
                {
                    "model_name": "fraud",
                    "version": "1.0.0",
                    "from_stage": "development",
                    "to_stage": "production",
                    "reason": "",
                },
            ),
        ],
        model_id("fraud"): [
            ("ProductionVersionChanged", {"version": "1.0.0", "previous_version": None})
        ],
    }


def test_staging_needs_one_approver(h: Harness) -> None:
    sub = h.submit(stage="staging")
    res = h.approve(sub, "bob")
    assert h.types_of(res) == ["ApprovalRecorded", "SubmissionApproved", "VersionApproved"]


def test_duplicate_approver_is_refused(h: Harness) -> None:
    sub = h.submit()
    assert h.approve(sub, "bob").status == "accepted"
    assert_rejected(h.approve(sub, "bob"), "invariant_violation", "duplicate_approver")
    assert [e.type for e in h.stream(sub)] == ["SubmissionCreated", "ApprovalRecorded"]
    assert_rejected(h.transition("1.0.0", "production"), "invariant_violation", "approval_required")


def test_approve_after_reject_is_final(h: Harness) -> None:
    sub = h.submit()
    rejected = h.reject(sub, "bob")
    assert h.events_of(rejected) == [
        ("Submission", "SubmissionRejected", {"rejected_by": "bob", "reason": "not convincing"})
    ]
    assert_rejected(h.approve(sub, "carol"), "invariant_violation", "decision_final")
    assert_rejected(h.reject(sub, "carol"), "invariant_violation", "decision_final")
    assert [e.type for e in h.stream(sub)] == ["SubmissionCreated", "SubmissionRejected"]


def test_reject_after_partial_approval_blocks_promotion(h: Harness) -> None:
    sub = h.submit()
    assert h.approve(sub, "bob").status == "accepted"
    assert h.reject(sub, "carol").status == "accepted"
    assert_rejected(h.approve(sub, "dave"), "invariant_violation", "decision_final")
    assert_rejected(h.transition("1.0.0", "production"), "invariant_violation", "approval_required")


def test_decision_after_approval_is_final(h: Harness) -> None:
    sub = h.submit()
    h.approve(sub, "bob")
    h.approve(sub, "carol")
    assert_rejected(h.approve(sub, "dave"), "invariant_violation", "decision_final")
    assert_rejected(h.reject(sub, "dave"), "invariant_violation", "decision_final")


def test_promotion_without_any_submission_needs_approval(h: Harness) -> None:
    assert_rejected(h.transition("1.0.0", "production"), "invariant_violation", "approval_required")
    h.transition("1.0.0", "staging")
    assert_rejected(h.transition("1.0.0", "production"), "invariant_violation", "approval_required")


def test_staging_approval_does_not_unlock_production(h: Harness) -> None:
    sub = h.submit(stage="staging")
    h.approve(sub, "bob")
    assert_rejected(h.transition("1.0.0", "production"), "invariant_violation", "approval_required")


def test_deciding_on_an_unknown_submission_is_not_found(h: Harness) -> None:
    assert_rejected(h.approve(uuid.uuid4(), "bob"), "not_found")
    assert_rejected(h.reject(uuid.uuid4(), "bob"), "not_found")


def test_submitting_an_unknown_version_or_model_is_not_found(h: Harness) -> None:
    payload = {
        "model_name": "fraud",
        "version": "9.9.9",
        "target_stage": "production",
        "justification": "j",
    }
    assert_rejected(h.send("alice", "SubmitForApproval", payload), "not_found")
    assert_rejected(
        h.send("alice", "SubmitForApproval", {**payload, "model_name": "nope"}), "not_found"
    )


def test_only_approvers_decide(h: Harness) -> None:
    sub = h.submit()
    res = h.send("erin", "ApproveSubmission", {"submission_id": str(sub)})
    assert_rejected(res, "forbidden")


def test_approvals_in_one_batch_complete_the_submission(h: Harness) -> None:
    sub = h.submit()
    outs = h.batch(
        h.msg("bob", "ApproveSubmission", {"submission_id": str(sub)}),
        h.msg("bob", "ApproveSubmission", {"submission_id": str(sub)}),
        h.msg("carol", "ApproveSubmission", {"submission_id": str(sub)}),
        h.msg(
            "erin",
            "TransitionStage",
            {"model_name": "fraud", "version": "1.0.0", "stage": "production"},
        ),
    )
    assert h.types_of(outs[0]) == ["ApprovalRecorded"]
    assert_rejected(outs[1], "invariant_violation", "duplicate_approver")
    assert h.types_of(outs[2]) == ["ApprovalRecorded", "SubmissionApproved", "VersionApproved"]
    assert h.type_groups(outs[3]) == {
        version_id("fraud", "1.0.0"): ["StageTransitioned"],
        model_id("fraud"): ["ProductionVersionChanged"],
    }
    assert [e.type for e in h.stream(sub)] == [
        "SubmissionCreated",
        "ApprovalRecorded",
        "ApprovalRecorded",
        "SubmissionApproved",
    ]

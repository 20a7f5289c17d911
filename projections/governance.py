"""Projection of governance events into rm_submissions (the approval queue reads from it): pure
functions from an event to row operations (projections.ops)."""

from __future__ import annotations

from projections.ops import Event, Insert, Op, Projection, Update


def submission_created(e: Event) -> list[Op]:
    p = e.payload
    cols = ("submission_id", "model_name", "version", "target_stage", "justification")
    row = {
        **{c: p[c] for c in cols},
        "submitted_by": p["submitted_by"],
        "required_approvals": p["required_approvals"],
        "approvers": [],
        "status": "pending",
        "decided_by": None,
        "reason": None,
        "created_at": e.occurred_at,
        "updated_at": e.occurred_at,
    }
    return [Insert("rm_submissions", row)]


def _decide(e: Event, **changes: str | None) -> list[Op]:
    return [
        Update(
            "rm_submissions",
            "submission_id",
            e.aggregate_id,
            set={**changes, "updated_at": e.occurred_at},
        )
    ]


def approval_recorded(e: Event) -> list[Op]:
    entry = {
        "approver": e.payload["approver"],
        "comments": e.payload["comments"],
        "at": e.occurred_at.isoformat(),
    }
    return [
        Update(
            "rm_submissions",
            "submission_id",
            e.aggregate_id,
            set={"updated_at": e.occurred_at},
            append={"approvers": [entry]},
        )
    ]


def submission_approved(e: Event) -> list[Op]:
    return _decide(e, status="approved", decided_by=e.actor)


def submission_rejected(e: Event) -> list[Op]:
    return _decide(
        e, status="rejected", decided_by=e.payload["rejected_by"], reason=e.payload["reason"]
    )


PROJECTIONS: dict[str, Projection] = {
    "SubmissionCreated": submission_created,
    "ApprovalRecorded": approval_recorded,
    "SubmissionApproved": submission_approved,
    "SubmissionRejected": submission_rejected,
}

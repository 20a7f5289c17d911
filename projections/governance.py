"""Projection of governance events into rm_submissions (the approval queue reads from it)."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.types.json import Jsonb

from events.envelope import EventEnvelope
from projections.registry import Projection


def submission_created(cur: Cursor, env: EventEnvelope) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO rm_submissions (submission_id, model_name, version, target_stage, justification,"
        " submitted_by, required_approvals, status, created_at, updated_at)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s,'pending',%s,%s)",
        (
            p["submission_id"],
            p["model_name"],
            p["version"],
            p["target_stage"],
            p["justification"],
            p["submitted_by"],
            p["required_approvals"],
            env.occurred_at,
            env.occurred_at,
        ),
    )


def approval_recorded(cur: Cursor, env: EventEnvelope) -> None:
    entry = {
        "approver": env.payload["approver"],
        "comments": env.payload["comments"],
        "at": env.occurred_at.isoformat(),
    }
    cur.execute(
        "UPDATE rm_submissions SET approvers = approvers || %s, updated_at = %s WHERE submission_id = %s",
        (Jsonb([entry]), env.occurred_at, env.aggregate_id),
    )


def submission_approved(cur: Cursor, env: EventEnvelope) -> None:
    cur.execute(
        "UPDATE rm_submissions SET status = 'approved', decided_by = %s, updated_at = %s"
        " WHERE submission_id = %s",
        (env.actor, env.occurred_at, env.aggregate_id),
    )


def submission_rejected(cur: Cursor, env: EventEnvelope) -> None:
    cur.execute(
        "UPDATE rm_submissions SET status = 'rejected', decided_by = %s, reason = %s, updated_at = %s"
        " WHERE submission_id = %s",
        (env.payload["rejected_by"], env.payload["reason"], env.occurred_at, env.aggregate_id),
    )


PROJECTIONS: dict[str, Projection] = {
    "SubmissionCreated": submission_created,
    "ApprovalRecorded": approval_recorded,
    "SubmissionApproved": submission_approved,
    "SubmissionRejected": submission_rejected,
}

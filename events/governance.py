"""Governance events (topic governance.events)."""

from __future__ import annotations

from events.base import DomainEvent


class SubmissionCreated(DomainEvent):
    submission_id: str
    model_name: str
    version: str
    target_stage: str
    justification: str
    submitted_by: str
    required_approvals: int


class ApprovalRecorded(DomainEvent):
    approver: str
    comments: str | None


class SubmissionApproved(DomainEvent):
    approvers: list[str]


class SubmissionRejected(DomainEvent):
    rejected_by: str
    reason: str


EVENTS: dict[str, type[DomainEvent]] = {
    cls.__name__: cls
    for cls in (SubmissionCreated, ApprovalRecorded, SubmissionApproved, SubmissionRejected)
}

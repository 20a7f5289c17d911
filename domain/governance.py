"""Governance aggregate: a Submission asking to move a model version to staging or production."""

from __future__ import annotations

from uuid import UUID

from domain.base import Aggregate, Meta, aggregate_id
from domain.errors import AlreadyExists, InvariantViolation, NotFound
from events.base import DomainEvent
from events.envelope import EventEnvelope
from events.governance import (
    ApprovalRecorded,
    SubmissionApproved,
    SubmissionCreated,
    SubmissionRejected,
)

# Seed 004: production needs two distinct approvers; staging needs one.
REQUIRED_APPROVALS = {"staging": 1, "production": 2}


def submission_id_for(command_id: str) -> UUID:
    return aggregate_id("submission", command_id)


class Submission(Aggregate):
    aggregate_type = "Submission"
    context = "governance"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.model_name = ""
        self.semver = ""
        self.target_stage = ""
        self.submitted_by = ""
        self.required = 0
        self.approvers: list[str] = []
        self.status = "pending"

    def create(
        self, model_name: str, version: str, target_stage: str, justification: str, meta: Meta
    ) -> None:
        if self.exists:
            raise AlreadyExists(f"submission {self.id} already exists")
        self.record(
            SubmissionCreated(
                submission_id=str(self.id),
                model_name=model_name,
                version=version,
                target_stage=target_stage,
                justification=justification,
                submitted_by=meta.actor,
                required_approvals=REQUIRED_APPROVALS[target_stage],
            ),
            meta,
        )

    def check_decidable(self, actor: str) -> None:
        if not self.exists:
            raise NotFound(f"submission {self.id} does not exist")
        if self.status != "pending":
            raise InvariantViolation(
                f"submission {self.id} was already {self.status}; a decision is final",
                "decision_final",
            )
        if actor == self.submitted_by:
            raise InvariantViolation("no one may decide on their own submission", "self_approval")

    def approve(self, comments: str | None, meta: Meta) -> bool:
        """Record one approval; returns True when this approval completes the submission."""
        self.check_decidable(meta.actor)
        if meta.actor in self.approvers:
            raise InvariantViolation(
                f"{meta.actor} already approved submission {self.id}; approvers must be distinct",
                "duplicate_approver",
            )
        self.record(ApprovalRecorded(approver=meta.actor, comments=comments), meta)
        if len(self.approvers) >= self.required:
            self.record(SubmissionApproved(approvers=list(self.approvers)), meta)
            return True
        return False

    def reject(self, reason: str, meta: Meta) -> None:
        self.check_decidable(meta.actor)
        self.record(SubmissionRejected(rejected_by=meta.actor, reason=reason), meta)

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        match event:
            case SubmissionCreated():
                self.model_name, self.semver = event.model_name, event.version
                self.target_stage, self.submitted_by = event.target_stage, event.submitted_by
                self.required = event.required_approvals
            case ApprovalRecorded():
                self.approvers.append(event.approver)
            case SubmissionApproved():
                self.status = "approved"
            case SubmissionRejected():
                self.status = "rejected"

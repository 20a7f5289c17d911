"""Governance commands (topic governance.commands)."""

from __future__ import annotations

from uuid import UUID

from commands.base import Command, Name, SemVer, ShortText, TargetStage, Text


class GovernanceCommand(Command):
    context = "governance"


class SubmitForApproval(GovernanceCommand):
    model_name: Name
    version: SemVer
    target_stage: TargetStage
    justification: Text


class ApproveSubmission(GovernanceCommand):
    submission_id: UUID
    comments: ShortText | None = None


class RejectSubmission(GovernanceCommand):
    submission_id: UUID
    reason: Text

"""Governance commands (topic governance.commands)."""

from __future__ import annotations

from commands.base import Command, LaxUUID, Name, SemVer, ShortText, TargetStage, Text


class GovernanceCommand(Command):
    context = "governance"


class SubmitForApproval(GovernanceCommand):
    model_name: Name
    version: SemVer
    target_stage: TargetStage
    justification: Text


class ApproveSubmission(GovernanceCommand):
    submission_id: LaxUUID
    comments: ShortText | None = None


class RejectSubmission(GovernanceCommand):
    submission_id: LaxUUID
    reason: Text

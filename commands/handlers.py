"""Command handlers: plain functions `handle(cmd, *, deps)`, registered in one explicit dict.

Each handler loads aggregates through the unit of work, calls their methods (which check
invariants and record events) and returns nothing; the worker commits what was recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands import monitoring_handlers, serving_handlers, training_handlers
from commands.base import Command
from commands.deps import Deps
from commands.governance import ApproveSubmission, RejectSubmission, SubmitForApproval
from commands.loads import load_model as _model
from commands.loads import load_version as _version
from commands.registry import (
    ArchiveModelVersion,
    RegisterDataset,
    RegisterModel,
    RegisterModelVersion,
    RollbackProduction,
    TransitionStage,
    UpdateModelMetadata,
)
from domain.errors import InvariantViolation
from domain.governance import Submission, submission_id_for
from domain.registry import (
    Dataset,
    ModelVersion,
    RegisteredModel,
    dataset_id,
    model_id,
    version_id,
)

__all__ = ["HANDLERS", "PREFETCH", "Deps"]

Handler = Callable[..., None]


def register_model(cmd: RegisterModel, *, deps: Deps) -> None:
    fields = cmd.model_dump()
    fields["owner"] = cmd.owner or deps.meta.actor
    deps.uow.get(RegisteredModel, model_id(cmd.name)).register(fields, deps.meta)


def update_model_metadata(cmd: UpdateModelMetadata, *, deps: Deps) -> None:
    _model(deps, cmd.name).update_metadata(cmd.model_dump(exclude={"name"}), deps.meta)


def register_dataset(cmd: RegisterDataset, *, deps: Deps) -> None:
    fields = {**cmd.model_dump(), "registered_by": deps.meta.actor}
    deps.uow.get(Dataset, dataset_id(cmd.name, cmd.version)).register(fields, deps.meta)


def register_model_version(cmd: RegisterModelVersion, *, deps: Deps) -> None:
    _model(deps, cmd.model_name)
    if cmd.lineage.parent_version:
        _version(deps, cmd.model_name, cmd.lineage.parent_version)
    if cmd.lineage.dataset:
        ds = cmd.lineage.dataset
        deps.uow.get(Dataset, dataset_id(ds.name, ds.version)).check_checksum(
            ds.name, ds.version, ds.checksum
        )
    fields = {**cmd.model_dump(mode="json"), "registered_by": deps.meta.actor}
    fields["artifact"] = cmd.artifact.model_dump(mode="json", exclude_none=True)
    deps.uow.get(ModelVersion, version_id(cmd.model_name, cmd.version)).register(fields, deps.meta)


def transition_stage(cmd: TransitionStage, *, deps: Deps) -> None:
    model = _model(deps, cmd.model_name)
    mv = _version(deps, cmd.model_name, cmd.version)
    mv.check_transition(cmd.stage)
    if cmd.stage == "archived":
        _check_not_production(model, cmd.version)
    if cmd.stage == "production" and model.production_version:
        previous = _version(deps, cmd.model_name, model.production_version)
        previous.transition("archived", f"superseded by {cmd.version}", deps.meta)
    mv.transition(cmd.stage, "", deps.meta)
    if cmd.stage == "production":
        model.set_production(cmd.version, deps.meta)


def _check_not_production(model: RegisteredModel, version: str) -> None:
    if model.production_version == version:
        raise InvariantViolation(
            f"version {version} is in production; roll back or promote another version first",
            "archive_production",
        )


def archive_model_version(cmd: ArchiveModelVersion, *, deps: Deps) -> None:
    model = _model(deps, cmd.model_name)
    mv = _version(deps, cmd.model_name, cmd.version)
    mv.check_transition("archived")
    _check_not_production(model, cmd.version)
    mv.transition("archived", cmd.reason, deps.meta)


def rollback_production(cmd: RollbackProduction, *, deps: Deps) -> None:
    model = _model(deps, cmd.model_name)
    current, previous = model.check_can_roll_back()
    _version(deps, cmd.model_name, current).transition(
        "archived", f"rolled back: {cmd.reason}", deps.meta
    )
    _version(deps, cmd.model_name, previous).transition(
        "production", f"restored: {cmd.reason}", deps.meta
    )
    model.roll_back(cmd.reason, deps.meta)


def submit_for_approval(cmd: SubmitForApproval, *, deps: Deps) -> None:
    _model(deps, cmd.model_name)
    mv = _version(deps, cmd.model_name, cmd.version)
    mv.check_submittable(cmd.target_stage)
    sub = deps.uow.get(Submission, submission_id_for(deps.meta.causation_id))
    sub.create(cmd.model_name, cmd.version, cmd.target_stage, cmd.justification, deps.meta)


def approve_submission(cmd: ApproveSubmission, *, deps: Deps) -> None:
    sub = deps.uow.get(Submission, cmd.submission_id)
    if sub.approve(cmd.comments, deps.meta):
        mv = _version(deps, sub.model_name, sub.semver)
        mv.approve(str(sub.id), sub.target_stage, list(sub.approvers), deps.meta)


def reject_submission(cmd: RejectSubmission, *, deps: Deps) -> None:
    deps.uow.get(Submission, cmd.submission_id).reject(cmd.reason, deps.meta)


HANDLERS: dict[type[Command], Handler] = {
    RegisterModel: register_model,
    UpdateModelMetadata: update_model_metadata,
    RegisterDataset: register_dataset,
    RegisterModelVersion: register_model_version,
    TransitionStage: transition_stage,
    ArchiveModelVersion: archive_model_version,
    RollbackProduction: rollback_production,
    SubmitForApproval: submit_for_approval,
    ApproveSubmission: approve_submission,
    RejectSubmission: reject_submission,
    **training_handlers.HANDLERS,
    **monitoring_handlers.HANDLERS,
    **serving_handlers.HANDLERS,
}


def _version_ids(model_name: str, *versions: str | None) -> list[UUID]:
    return [model_id(model_name), *(version_id(model_name, v) for v in versions if v)]


# The aggregates each command will load, so a batch can fetch them all in one round trip.
# A miss is harmless: the unit of work then loads the stream on demand.
PREFETCH: dict[type[Command], Callable[[Any], list[UUID]]] = {
    RegisterModel: lambda c: [model_id(c.name)],
    UpdateModelMetadata: lambda c: [model_id(c.name)],
    RegisterDataset: lambda c: [dataset_id(c.name, c.version)],
    RegisterModelVersion: lambda c: [
        *_version_ids(c.model_name, c.version, c.lineage.parent_version),
        *(
            [dataset_id(c.lineage.dataset.name, c.lineage.dataset.version)]
            if c.lineage.dataset
            else []
        ),
    ],
    TransitionStage: lambda c: _version_ids(c.model_name, c.version),
    ArchiveModelVersion: lambda c: _version_ids(c.model_name, c.version),
    RollbackProduction: lambda c: [model_id(c.model_name)],
    SubmitForApproval: lambda c: _version_ids(c.model_name, c.version),
    ApproveSubmission: lambda c: [c.submission_id],
    RejectSubmission: lambda c: [c.submission_id],
    **training_handlers.PREFETCH,
    **monitoring_handlers.PREFETCH,
    **serving_handlers.PREFETCH,
}

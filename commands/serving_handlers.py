"""Handlers of the serving commands: each loads the model's Deployment (and the registry's
aggregates it must check or change), calls its methods and returns nothing. A promotion changes
the registry in the same transaction (the version to production, the previous one archived,
ProductionVersionChanged), so serving follows the registry's events alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands.base import Command
from commands.deps import Deps
from commands.loads import load_model as _model
from commands.loads import load_version as _version
from commands.serving import (
    AbortDeployment,
    PromoteCanary,
    RecordCanaryMeasurement,
    RecordLoadRefused,
    RecordScaleOut,
    RecordServedVersion,
    RollBackCanary,
    StartDeployment,
)
from domain.errors import InvariantViolation
from domain.registry import model_id, version_id
from domain.serving import Deployment, ServingFleet, deployment_id, fleet_id


def _deployment(deps: Deps, name: str) -> Deployment:
    return deps.uow.get(Deployment, deployment_id(name))


def start_deployment(cmd: StartDeployment, *, deps: Deps) -> None:
    model = _model(deps, cmd.model_name)
    mv = _version(deps, cmd.model_name, cmd.version)
    mv.check_not_archived()
    if not mv.approved_for & {"staging", "production"}:
        raise InvariantViolation(
            f"version {cmd.version} has no approved submission; a canary needs staging or production",
            "approval_required",
        )
    if cmd.faults is not None and not deps.serving.fault_injection:
        raise InvariantViolation(
            "fault injection is off (settings.serving_fault_injection)", "faults_disabled"
        )
    dep = _deployment(deps, cmd.model_name)
    dep.check_can_start(cmd.version, model.production_version)
    fields = cmd.model_dump(mode="json")
    fields.update(from_version=model.production_version, started_by=deps.meta.actor)
    dep.start(fields, deps.meta)


def promote_canary(cmd: PromoteCanary, *, deps: Deps) -> None:
    model = _model(deps, cmd.model_name)
    dep = _deployment(deps, cmd.model_name)
    dep.check_rollout(cmd.version)
    mv = _version(deps, cmd.model_name, cmd.version)
    measured, decision = dict(cmd.measured), {**cmd.decision, "decided_by": deps.meta.actor}
    if "production" not in mv.approved_for:
        detail = (
            f"version {cmd.version} of '{cmd.model_name}' has no production approval by two "
            "distinct approvers; the canary is rolled back"
        )
        dep.refuse_promotion(detail, measured, deps.meta)
        return
    mv.check_transition("production")
    if model.production_version:
        previous = _version(deps, cmd.model_name, model.production_version)
        previous.transition("archived", f"superseded by canary {cmd.version}", deps.meta)
    mv.transition("production", "canary promoted", deps.meta)
    model.set_production(cmd.version, deps.meta)
    dep.promote(measured, decision, deps.meta)


def roll_back_canary(cmd: RollBackCanary, *, deps: Deps) -> None:
    dep = _deployment(deps, cmd.model_name)
    dep.check_rollout(cmd.version)
    decision = {**cmd.decision, "decided_by": deps.meta.actor}
    dep.roll_back(cmd.reason, dict(cmd.measured), decision, deps.meta)


def abort_deployment(cmd: AbortDeployment, *, deps: Deps) -> None:
    _deployment(deps, cmd.model_name).abort(cmd.reason, deps.meta)


def record_canary_measurement(cmd: RecordCanaryMeasurement, *, deps: Deps) -> None:
    fields = cmd.model_dump(mode="json")
    for side in ("canary", "stable"):
        n = fields[side]["requests"]
        fields[side]["error_rate"] = fields[side]["errors"] / n if n else 0.0
    _deployment(deps, cmd.model_name).measure(fields, deps.meta)


def record_load_refused(cmd: RecordLoadRefused, *, deps: Deps) -> None:
    _deployment(deps, cmd.model_name).load_refused(cmd.model_dump(mode="json"), deps.meta)


def record_served_version(cmd: RecordServedVersion, *, deps: Deps) -> None:
    _deployment(deps, cmd.model_name).served(cmd.model_dump(mode="json"), deps.meta)


def record_scale_out(cmd: RecordScaleOut, *, deps: Deps) -> None:
    deps.uow.get(ServingFleet, fleet_id()).scale_out(cmd.model_dump(mode="json"), deps.meta)


HANDLERS: dict[type[Command], Callable[..., None]] = {
    StartDeployment: start_deployment,
    PromoteCanary: promote_canary,
    RollBackCanary: roll_back_canary,
    AbortDeployment: abort_deployment,
    RecordCanaryMeasurement: record_canary_measurement,
    RecordLoadRefused: record_load_refused,
    RecordServedVersion: record_served_version,
    RecordScaleOut: record_scale_out,
}


def _ids(c: Any) -> list[UUID]:
    return [model_id(c.model_name), deployment_id(c.model_name)]


PREFETCH: dict[type[Command], Callable[[Any], list[UUID]]] = {
    **{cls: _ids for cls in HANDLERS if cls is not RecordScaleOut},
    StartDeployment: lambda c: [*_ids(c), version_id(c.model_name, c.version)],
    PromoteCanary: lambda c: [*_ids(c), version_id(c.model_name, c.version)],
    RecordScaleOut: lambda c: [fleet_id()],
}

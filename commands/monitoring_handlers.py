"""Handlers of the monitoring commands: each loads the model's Monitor, calls one of its methods
(which checks the invariant and records the events) and returns nothing. A retraining takes the
production version's configuration (else the monitored version's) from the registry's events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands.base import Command
from commands.deps import Deps
from commands.loads import load_model as _model
from commands.loads import load_version as _version
from commands.monitoring import RecordAccuracy, RecordDriftCheck, SetMonitoringPolicy
from domain.monitoring import Monitor, monitor_id
from domain.registry import RegisteredModel, model_id, version_id


def training_config(deps: Deps, model: RegisteredModel, version: str) -> dict[str, Any] | None:
    """What StartTraining needs to retrain: the production version's dataset and
    hyperparameters (the monitored version's when nothing is in production)."""
    source = _version(deps, model.name, model.production_version or version)
    reg = source.registered
    config = (reg.lineage.get("training_config") or {}) if reg else {}
    if not config.get("dataset_uri"):
        return None  # registered by hand: nothing to retrain from
    return {
        "model_name": model.name,
        "from_version": source.semver,
        "dataset_uri": config["dataset_uri"],
        "hyperparameters": config.get("hyperparameters") or {},
    }


def set_monitoring_policy(cmd: SetMonitoringPolicy, *, deps: Deps) -> None:
    _model(deps, cmd.model_name)
    monitor = deps.uow.get(Monitor, monitor_id(cmd.model_name))
    monitor.set_policy(cmd.model_name, cmd.policy.model_dump(mode="json"), deps.meta)


def record_drift_check(cmd: RecordDriftCheck, *, deps: Deps) -> None:
    model = _model(deps, cmd.model_name)
    _version(deps, cmd.model_name, cmd.version)
    monitor = deps.uow.get(Monitor, monitor_id(cmd.model_name))
    training = None
    if cmd.severity == "critical" and monitor.check_retrain(
        "critical_drift", deps.meta.occurred_at
    ):
        training = training_config(deps, model, cmd.version)
    monitor.record_drift(cmd.model_dump(mode="json"), training, deps.meta)


def record_accuracy(cmd: RecordAccuracy, *, deps: Deps) -> None:
    model = _model(deps, cmd.model_name)
    mv = _version(deps, cmd.model_name, cmd.version)
    monitor = deps.uow.get(Monitor, monitor_id(cmd.model_name))
    validation = mv.registered.metrics.get("accuracy") if mv.registered else None
    training = None
    if monitor.check_retrain("accuracy_drop", deps.meta.occurred_at):
        training = training_config(deps, model, cmd.version)
    monitor.record_accuracy(cmd.model_dump(mode="json"), validation, training, deps.meta)


HANDLERS: dict[type[Command], Callable[..., None]] = {
    SetMonitoringPolicy: set_monitoring_policy,
    RecordDriftCheck: record_drift_check,
    RecordAccuracy: record_accuracy,
}


def _ids(c: Any) -> list[UUID]:
    return [model_id(c.model_name), monitor_id(c.model_name), version_id(c.model_name, c.version)]


PREFETCH: dict[type[Command], Callable[[Any], list[UUID]]] = {
    SetMonitoringPolicy: lambda c: [model_id(c.model_name), monitor_id(c.model_name)],
    RecordDriftCheck: _ids,
    RecordAccuracy: _ids,
}

"""Monitoring events (topic monitoring.events): the Monitor aggregate's history, one stream per
model. Every evaluated drift window, every drift and accuracy alarm, every policy change and
every retraining it started is one of these, hash-chained in the same audit log as the rest."""

from __future__ import annotations

from typing import Any

from events.base import DomainEvent


class MonitoringPolicySet(DomainEvent):
    model_name: str
    policy: dict[str, Any]  # commands.monitoring.Policy, every field filled in
    set_by: str


class DriftChecked(DomainEvent):
    """One evaluated window of a version's served inputs."""

    model_name: str
    version: str
    window_id: int  # 1, 2, 3 ... per (model, version), contiguous
    score: float  # the share of drifted features (Evidently's, over the tested columns)
    severity: str | None  # warning | critical | None
    per_feature: dict[str, Any]
    drifted: list[str]
    bounds: dict[str, Any]  # rows, first/last request id and time, the source offsets
    method: dict[str, Any]  # thresholds, overrides, reference rows, evidently version


class DriftDetected(DomainEvent):
    """A checked window at warning or critical (recorded with its DriftChecked)."""

    model_name: str
    version: str
    window_id: int
    score: float
    severity: str
    per_feature: dict[str, Any]
    drifted: list[str]
    bounds: dict[str, Any]
    report_sha256: str | None  # Evidently's HTML report in the artifact store


class AccuracyRecorded(DomainEvent):
    """One window of labelled predictions (inference.feedback joined to inference.results)."""

    model_name: str
    version: str
    window_id: int
    n: int
    correct: int
    accuracy: float
    validation_accuracy: float | None
    bounds: dict[str, Any]


class AccuracyDropped(DomainEvent):
    model_name: str
    version: str
    window_id: int
    accuracy: float
    validation_accuracy: float
    factor: float  # the alarm is accuracy < factor * validation_accuracy


class RetrainingTriggered(DomainEvent):
    """The policy's decision to retrain; the retraining saga sends StartTraining from it."""

    model_name: str
    version: str  # the monitored version whose window triggered it
    window_id: int  # its drift (or accuracy) window
    reason: str  # critical_drift | accuracy_drop
    drift_event_id: str | None
    accuracy_event_id: str | None
    report_sha256: str | None
    training: dict[str, Any]  # the production version's configuration (dataset, hyperparameters)
    cooldown_s: float


EVENTS: dict[str, type[DomainEvent]] = {
    cls.__name__: cls
    for cls in (
        MonitoringPolicySet,
        DriftChecked,
        DriftDetected,
        AccuracyRecorded,
        AccuracyDropped,
        RetrainingTriggered,
    )
}

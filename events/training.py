"""Training events (topic training.events): the TrainingRun saga's own history. Every step, retry,
timeout and compensation is one of these, hash-chained in the same audit log as the registry."""

from __future__ import annotations

from typing import Any, Literal

from events.base import DomainEvent

StepKind = Literal["run", "compensate"]


class TrainingStarted(DomainEvent):
    run_id: str
    model_name: str
    dataset_uri: str
    hyperparameters: dict[str, Any]
    gates: dict[str, Any]
    trigger: dict[str, Any] | None
    declared_major: bool
    requested_by: str
    steps: list[str]  # the run steps, in order
    max_attempts: int
    step_deadline_s: dict[str, float]
    faults: dict[str, Any] | None = None  # fault injection (tests and benchmarks only)


class StepDispatched(DomainEvent):
    step: str
    attempt: int
    kind: StepKind
    deadline_at: str  # ISO time; the orchestrator's timer records a timeout after it
    inputs: dict[str, Any]


class StepSucceeded(DomainEvent):
    step: str
    attempt: int
    kind: StepKind
    result: dict[str, Any]
    duration_s: float


class StepFailed(DomainEvent):
    step: str
    attempt: int
    kind: StepKind
    error: str
    permanent: bool
    detail: dict[str, Any] = {}


class StepTimedOut(DomainEvent):
    step: str
    attempt: int
    kind: StepKind
    deadline_at: str


class StepRetryScheduled(DomainEvent):
    step: str
    attempt: int  # the attempt that will run
    kind: StepKind
    due_at: str
    backoff_s: float


class TrainingProgressed(DomainEvent):
    step: str
    attempt: int
    epoch: int
    loss: float
    accuracy: float
    holdout_accuracy: float | None = None


class CancellationRequested(DomainEvent):
    reason: str
    requested_by: str


class CompensationStarted(DomainEvent):
    cause: str  # failed | timed_out | cancelled
    failed_step: str | None
    error: str
    to_compensate: list[str]  # completed run steps, newest first


class TrainingCompleted(DomainEvent):
    model_name: str
    version: str
    artifact_sha256: str
    submission_id: str | None


class TrainingFailed(DomainEvent):
    cause: str
    failed_step: str | None
    error: str
    compensated: list[str]


class TrainingCancelled(DomainEvent):
    reason: str
    compensated: list[str]


EVENTS: dict[str, type[DomainEvent]] = {
    cls.__name__: cls
    for cls in (
        TrainingStarted,
        StepDispatched,
        StepSucceeded,
        StepFailed,
        StepTimedOut,
        StepRetryScheduled,
        TrainingProgressed,
        CancellationRequested,
        CompensationStarted,
        TrainingCompleted,
        TrainingFailed,
        TrainingCancelled,
    )
}

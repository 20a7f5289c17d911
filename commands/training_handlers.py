"""Handlers of the training commands: each loads the TrainingRun, calls one of its methods (which
checks the invariant and records the event) and returns nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from commands.base import Command
from commands.deps import Deps
from commands.training import (
    BeginCompensation,
    CancelTraining,
    DispatchStep,
    FinishTraining,
    RecordStepResult,
    RecordStepTimeout,
    RecordTrainingProgress,
    ScheduleRetry,
    StartTraining,
)
from domain.errors import InvariantViolation
from domain.registry import RegisteredModel, model_id
from domain.training import RUN_STEPS, TrainingRun, run_id_for


def _run(deps: Deps, run_id: UUID) -> TrainingRun:
    run = deps.uow.get(TrainingRun, run_id)
    run.check_exists()
    return run


def start_training(cmd: StartTraining, *, deps: Deps) -> None:
    deps.uow.get(RegisteredModel, model_id(cmd.model_name)).check_exists(cmd.model_name)
    if cmd.faults is not None and not deps.training.fault_injection:
        raise InvariantViolation(
            "fault injection is off (settings.training_fault_injection)", "faults_disabled"
        )
    fields = cmd.model_dump(mode="json", exclude={"deadlines_s"})
    deadlines = dict(deps.training.step_deadline_s)
    deadlines.update({str(step): s for step, s in cmd.deadlines_s.items()})
    deps.uow.get(TrainingRun, run_id_for(deps.meta.causation_id)).start(
        {
            **fields,
            "steps": list(RUN_STEPS),
            "max_attempts": deps.training.max_attempts,
            "step_deadline_s": deadlines,
        },
        deps.meta,
    )


def cancel_training(cmd: CancelTraining, *, deps: Deps) -> None:
    _run(deps, cmd.run_id).request_cancel(cmd.reason, deps.meta)


def dispatch_step(cmd: DispatchStep, *, deps: Deps) -> None:
    _run(deps, cmd.run_id).dispatch(cmd.step, cmd.attempt, cmd.kind, dict(cmd.inputs), deps.meta)


def record_step_result(cmd: RecordStepResult, *, deps: Deps) -> None:
    details = {
        "result": dict(cmd.result),
        "error": cmd.error,
        "permanent": cmd.permanent,
        "duration_s": cmd.duration_s,
    }
    _run(deps, cmd.run_id).record_result(
        cmd.step, cmd.attempt, cmd.kind, cmd.outcome, details, deps.meta
    )


def record_step_timeout(cmd: RecordStepTimeout, *, deps: Deps) -> None:
    _run(deps, cmd.run_id).record_timeout(cmd.step, cmd.attempt, cmd.kind, deps.meta)


def schedule_retry(cmd: ScheduleRetry, *, deps: Deps) -> None:
    _run(deps, cmd.run_id).schedule_retry(cmd.step, cmd.attempt, cmd.kind, cmd.backoff_s, deps.meta)


def record_training_progress(cmd: RecordTrainingProgress, *, deps: Deps) -> None:
    fields = cmd.model_dump(include={"epoch", "loss", "accuracy", "holdout_accuracy"})
    _run(deps, cmd.run_id).progress(cmd.step, cmd.attempt, fields, deps.meta)


def begin_compensation(cmd: BeginCompensation, *, deps: Deps) -> None:
    _run(deps, cmd.run_id).begin_compensation(cmd.cause, cmd.failed_step, cmd.error, deps.meta)


def finish_training(cmd: FinishTraining, *, deps: Deps) -> None:
    _run(deps, cmd.run_id).finish(cmd.outcome, deps.meta)


HANDLERS: dict[type[Command], Callable[..., None]] = {
    StartTraining: start_training,
    CancelTraining: cancel_training,
    DispatchStep: dispatch_step,
    RecordStepResult: record_step_result,
    RecordStepTimeout: record_step_timeout,
    ScheduleRetry: schedule_retry,
    RecordTrainingProgress: record_training_progress,
    BeginCompensation: begin_compensation,
    FinishTraining: finish_training,
}


def _run_ids(c: Any) -> list[UUID]:
    return [c.run_id]


PREFETCH: dict[type[Command], Callable[[Any], list[UUID]]] = {
    StartTraining: lambda c: [model_id(c.model_name)],  # the run's id comes from the command id
    **{cls: _run_ids for cls in HANDLERS if cls is not StartTraining},
}

"""The TrainingRun aggregate: the training saga's event-sourced state. Its invariants keep the
saga honest whatever the orchestrator sends: one attempt in flight at a time, results only for
the attempt in flight, retries only after a failure and within the attempt limit, compensation
only of steps that completed, and an end only when every step (or every compensation) is done."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from domain.base import Meta, aggregate_id
from domain.errors import AlreadyExists, InvariantViolation
from domain.training_state import COMPENSABLE, ENDED, RUN_STEPS, TrainingRunState
from events.base import DomainEvent
from events.training import (
    CancellationRequested,
    CompensationStarted,
    StepDispatched,
    StepFailed,
    StepRetryScheduled,
    StepSucceeded,
    StepTimedOut,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgressed,
    TrainingStarted,
)

__all__ = ["ENDED", "RUN_STEPS", "TrainingRun", "run_id_for"]


def run_id_for(command_id: str) -> UUID:
    """A StartTraining command always names the same run: a repeat is the same saga."""
    return aggregate_id("training-run", command_id)


class TrainingRun(TrainingRunState):
    """The commands of a run; each checks its invariant and records its event."""

    def start(self, fields: dict[str, Any], meta: Meta) -> None:
        if self.exists:
            raise AlreadyExists(f"training run {self.id} already exists")
        self.record(TrainingStarted(run_id=str(self.id), requested_by=meta.actor, **fields), meta)

    def request_cancel(self, reason: str, meta: Meta) -> None:
        self.check_not_ended()
        if self.cancel_reason is not None or self.status == "compensating":
            raise InvariantViolation(
                f"training run {self.id} is already stopping", "already_stopping"
            )
        self.record(CancellationRequested(reason=reason, requested_by=meta.actor), meta)

    def dispatch(
        self, step: str, attempt: int, kind: str, inputs: dict[str, Any], meta: Meta
    ) -> None:
        self.check_dispatchable(step, attempt, kind)
        due = self.retry
        if (
            due is not None
            and (due.step, due.attempt, due.kind) == (step, attempt, kind)
            and meta.occurred_at < datetime.fromisoformat(due.due_at)
        ):
            raise InvariantViolation(f"retry of {step} is due at {due.due_at}", "not_due")
        deadline = meta.occurred_at + timedelta(seconds=self.deadline_s(step))
        self.record(
            StepDispatched(
                step=step,
                attempt=attempt,
                kind=kind,
                deadline_at=deadline.isoformat(),
                inputs=inputs,
            ),
            meta,
        )

    def record_result(
        self, step: str, attempt: int, kind: str, outcome: str, details: dict[str, Any], meta: Meta
    ) -> None:
        self.check_open(step, attempt, kind)
        if outcome == "succeeded":
            event: DomainEvent = StepSucceeded(
                step=step,
                attempt=attempt,
                kind=kind,
                result=details["result"],
                duration_s=details["duration_s"],
            )
        else:
            event = StepFailed(
                step=step,
                attempt=attempt,
                kind=kind,
                error=details["error"],
                permanent=details["permanent"],
                detail=details["result"],
            )
        self.record(event, meta)

    def record_timeout(self, step: str, attempt: int, kind: str, meta: Meta) -> None:
        o = self.check_open(step, attempt, kind)
        if meta.occurred_at < datetime.fromisoformat(o.deadline_at):
            raise InvariantViolation(
                f"{step} attempt {attempt} is due until {o.deadline_at}", "not_due"
            )
        self.record(
            StepTimedOut(step=step, attempt=attempt, kind=kind, deadline_at=o.deadline_at), meta
        )

    def schedule_retry(
        self, step: str, attempt: int, kind: str, backoff_s: float, meta: Meta
    ) -> None:
        self.check_retryable(step, attempt, kind)
        due = meta.occurred_at + timedelta(seconds=backoff_s)
        self.record(
            StepRetryScheduled(
                step=step, attempt=attempt, kind=kind, due_at=due.isoformat(), backoff_s=backoff_s
            ),
            meta,
        )

    def progress(self, step: str, attempt: int, fields: dict[str, Any], meta: Meta) -> None:
        self.check_open(step, attempt, "run")
        self.record(TrainingProgressed(step=step, attempt=attempt, **fields), meta)

    def begin_compensation(
        self, cause: str, failed_step: str | None, error: str, meta: Meta
    ) -> None:
        self.check_not_ended()
        if self.status != "running" or self.open is not None:
            raise InvariantViolation(
                "compensation starts once, with no attempt in flight", "not_compensable"
            )
        todo = [s for s in reversed(self.completed) if s in COMPENSABLE]
        self.record(
            CompensationStarted(
                cause=cause, failed_step=failed_step, error=error, to_compensate=todo
            ),
            meta,
        )

    def finish(self, outcome: str, meta: Meta) -> None:
        self.check_not_ended()
        if self.open is not None:
            raise InvariantViolation("an attempt is in flight", "attempt_in_flight")
        if outcome == "completed":
            self._finish_completed(meta)
        elif self.status != "compensating" or self.next_compensation() is not None:
            raise InvariantViolation("compensation is not complete", "compensation_pending")
        elif outcome == "cancelled" and self.cause is not None and self.cause.cause == "cancelled":
            self.record(
                TrainingCancelled(reason=self.cancel_reason or "", compensated=self.compensated),
                meta,
            )
        elif outcome == "failed" and self.cause is not None and self.cause.cause != "cancelled":
            c = self.cause
            self.record(
                TrainingFailed(
                    cause=c.cause,
                    failed_step=c.failed_step,
                    error=c.error,
                    compensated=self.compensated,
                ),
                meta,
            )
        else:
            raise InvariantViolation(f"the run cannot end as {outcome}", "wrong_outcome")

    def _finish_completed(self, meta: Meta) -> None:
        if self.status != "running" or self.next_step() is not None:
            raise InvariantViolation("not every step has completed", "steps_pending")
        reg = self.results["model_registration"]
        trained = self.results["model_training"]
        self.record(
            TrainingCompleted(
                model_name=self.model_name,
                version=str(reg.get("version", "")),
                artifact_sha256=str(trained.get("artifact_sha256", "")),
                submission_id=reg.get("submission_id"),
            ),
            meta,
        )

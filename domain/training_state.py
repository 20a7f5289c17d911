"""The TrainingRun aggregate's state, folded from its events, and the checks its commands make.
The saga's policy (sagas.training) reads this state; domain.training adds the commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.base import Aggregate
from domain.errors import InvariantViolation, NotFound
from events.base import DomainEvent
from events.envelope import EventEnvelope
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
    TrainingStarted,
)

RUN_STEPS = ("data_preparation", "model_training", "model_validation", "model_registration")
# Steps whose effect is undone on failure (validation leaves nothing behind).
COMPENSABLE = ("data_preparation", "model_training", "model_registration")
ENDED = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Attempt:
    step: str
    attempt: int
    kind: str  # run | compensate
    deadline_at: str


@dataclass(frozen=True)
class Retry:
    step: str
    attempt: int
    kind: str
    due_at: str


class TrainingRunState(Aggregate):
    """The run's state, folded from its events, and the invariants its commands check."""

    aggregate_type = "TrainingRun"
    context = "training"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.status = "new"
        self.model_name = ""
        self.started: TrainingStarted | None = None
        self.attempts: dict[tuple[str, str], int] = {}  # latest attempt per (step, kind)
        self.failures: dict[tuple[str, str], int] = {}  # failed or timed-out attempts
        self.open: Attempt | None = None
        self.retry: Retry | None = None
        self.results: dict[str, dict[str, Any]] = {}  # succeeded run steps
        self.completed: list[str] = []
        self.to_compensate: list[str] = []
        self.compensated: list[str] = []
        self.uncompensated: list[str] = []  # compensations that failed for good
        self.cancel_reason: str | None = None
        self.last_failure: StepFailed | StepTimedOut | None = None
        self.cause: CompensationStarted | None = None

    # -- invariants -------------------------------------------------------------------------------

    def check_exists(self) -> None:
        if not self.exists:
            raise NotFound(f"training run {self.id} does not exist")

    def check_not_ended(self) -> None:
        self.check_exists()
        if self.status in ENDED:
            raise InvariantViolation(
                f"training run {self.id} has ended ({self.status})", "run_ended"
            )

    def check_open(self, step: str, attempt: int, kind: str) -> Attempt:
        self.check_not_ended()
        o = self.open
        if o is None or (o.step, o.attempt, o.kind) != (step, attempt, kind):
            raise InvariantViolation(
                f"{kind} {step} attempt {attempt} is not the attempt in flight"
                f" ({'none' if o is None else f'{o.kind} {o.step} attempt {o.attempt}'})",
                "stale_attempt",
            )
        return o

    def check_dispatchable(self, step: str, attempt: int, kind: str) -> None:
        self.check_not_ended()
        if self.open is not None:
            raise InvariantViolation(
                f"{self.open.kind} {self.open.step} attempt {self.open.attempt} is in flight",
                "attempt_in_flight",
            )
        expected = self.attempts.get((step, kind), 0) + 1
        if attempt != expected:
            raise InvariantViolation(
                f"{kind} {step}: attempt {attempt} out of order (next is {expected})",
                "stale_attempt",
            )
        if kind == "run" and (self.status != "running" or step != self.next_step()):
            raise InvariantViolation(f"{step} is not the next step", "out_of_order")
        if kind == "compensate" and (
            self.status != "compensating" or step != self.next_compensation()
        ):
            raise InvariantViolation(f"{step} is not the next compensation", "out_of_order")

    def check_retryable(self, step: str, attempt: int, kind: str) -> None:
        self.check_not_ended()
        failed = self.failures.get((step, kind), 0)
        if self.open is not None or attempt != self.attempts.get((step, kind), 0) + 1 or not failed:
            raise InvariantViolation(
                f"{kind} {step} attempt {attempt} is not retryable", "not_retryable"
            )
        assert self.started is not None
        if attempt > self.started.max_attempts:
            raise InvariantViolation(
                f"{kind} {step}: {self.started.max_attempts} attempts used", "attempts_exhausted"
            )

    # -- queries the policy uses ------------------------------------------------------------------

    def next_step(self) -> str | None:
        for step in self.started.steps if self.started else ():
            if step not in self.results:
                return step
        return None

    def next_compensation(self) -> str | None:
        for step in self.to_compensate:
            if step not in self.compensated and step not in self.uncompensated:
                return step
        return None

    def deadline_s(self, step: str) -> float:
        assert self.started is not None
        return float(self.started.step_deadline_s.get(step, 600.0))

    def _given_up(self, event: StepFailed | StepTimedOut) -> bool:
        permanent = isinstance(event, StepFailed) and event.permanent
        return permanent or (
            self.started is not None and event.attempt >= self.started.max_attempts
        )

    # -- state ------------------------------------------------------------------------------------

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        match event:
            case TrainingStarted():
                self.status, self.model_name, self.started = "running", event.model_name, event
            case StepDispatched():
                self.attempts[(event.step, event.kind)] = event.attempt
                self.open = Attempt(event.step, event.attempt, event.kind, event.deadline_at)
                self.retry = None
            case StepSucceeded():
                self.open = None
                if event.kind == "run":
                    self.results[event.step] = event.result
                    self.completed.append(event.step)
                else:
                    self.compensated.append(event.step)
            case StepFailed() | StepTimedOut():
                self.open, self.last_failure = None, event
                key = (event.step, event.kind)
                self.failures[key] = self.failures.get(key, 0) + 1
                if event.kind == "compensate" and self._given_up(event):
                    self.uncompensated.append(event.step)
            case StepRetryScheduled():
                self.retry = Retry(event.step, event.attempt, event.kind, event.due_at)
            case CancellationRequested():
                self.cancel_reason = event.reason
            case CompensationStarted():
                self.status, self.cause, self.to_compensate = (
                    "compensating",
                    event,
                    list(event.to_compensate),
                )
                self.retry = None
            case TrainingCompleted():
                self.status = "completed"
            case TrainingFailed():
                self.status = "failed"
            case TrainingCancelled():
                self.status = "cancelled"

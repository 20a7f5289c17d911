"""The TrainingRun saga's process manager: a pure policy from the run's state and one of its events
to the commands that move it on, and the timers its state asks for. No I/O: the orchestrator
(faust, workers/) loads the state from the event store, calls this, and sends what it returns.

Flow: data_preparation -> model_training -> model_validation -> model_registration (which also
submits the version for staging) -> TrainingCompleted. A failed attempt is retried with
exponential backoff and jitter up to max_attempts (a permanent error is not); then, or on a
timeout past the last attempt, or on CancelTraining, the completed steps are compensated newest
first and the run ends TrainingFailed or TrainingCancelled. Every decision is a command, and every
command's id is derived from what caused it, so a redelivered event produces the same ids and the
command handler's results table makes the repeat a no-op.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.training import TrainingRun
from events.base import DomainEvent
from events.training import (
    CancellationRequested,
    CompensationStarted,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
    TrainingStarted,
)

STEPS_TOPIC = "training.steps"


@dataclass(frozen=True)
class Send:
    """A command for the command handler (training.commands)."""

    type: str
    payload: dict[str, Any]
    key: str


@dataclass(frozen=True)
class StepMessage:
    """A step command for the step workers (training.steps, keyed by saga id)."""

    id: str
    payload: dict[str, Any]
    key: str


Outgoing = Send | StepMessage


@dataclass(frozen=True)
class Timer:
    at: datetime
    key: str


def command_id(cause: str, index: int, ctype: str) -> str:
    """A command's id from what caused it (an event id, or a timer's key) and its place among the
    policy's answers: a redelivery or a re-fired timer sends the very same id."""
    digest = hashlib.sha256(f"{cause}|{index}|{ctype}".encode()).hexdigest()[:40]
    return f"saga:{digest}"


def _send(run: TrainingRun, ctype: str, **payload: Any) -> Send:
    return Send(ctype, {"run_id": str(run.id), **payload}, str(run.id))


def backoff_s(run: TrainingRun, step: str, attempt: int, base_s: float = 1.0) -> float:
    """Exponential (base, 2x, 4x ... capped at 60 s) with up to 25% jitter, drawn from the run, step
    and attempt: the same decision every time the policy is asked."""
    raw = min(60.0, base_s * 2 ** max(0, attempt - 2))
    h = hashlib.sha256(f"{run.id}/{step}/{attempt}".encode()).digest()
    return float(round(raw * (1 + 0.25 * int.from_bytes(h[:2], "big") / 65535), 3))


def inputs_for(run: TrainingRun, step: str, kind: str) -> dict[str, Any]:
    """What a step's worker needs, from the run's request and the results of earlier steps."""
    s, r = run.started, run.results
    assert s is not None
    prep, trained = r.get("data_preparation", {}), r.get("model_training", {})
    if kind == "compensate":
        return {
            "data_preparation": {"snapshot": prep.get("snapshot")},
            "model_training": {
                "artifact_sha256": trained.get("artifact_sha256"),
                "manifest_sha256": trained.get("manifest_sha256"),
            },
            "model_registration": {
                "model_name": s.model_name,
                "version": r.get("model_registration", {}).get("version"),
                "reason": f"training run {run.id} compensated: {run.cause.error if run.cause else ''}",
            },
        }.get(step, {})
    base = {"model_name": s.model_name}
    if step == "data_preparation":
        return {**base, "dataset_uri": s.dataset_uri, "seed": s.hyperparameters.get("seed", 0)}
    if step == "model_training":
        return {**base, "snapshot": prep.get("snapshot"), "hyperparameters": s.hyperparameters}
    if step == "model_validation":
        return {
            **base,
            "snapshot": prep.get("snapshot"),
            "training": trained,
            "gates": s.gates,
            "declared_major": s.declared_major,
        }
    return {
        **base,
        "snapshot": prep.get("snapshot"),
        "dataset": {k: prep.get(k) for k in ("dataset_uri", "dataset_sha256", "dataset_ref")},
        "training": trained,
        "validation": r.get("model_validation", {}),
        "hyperparameters": s.hyperparameters,
        "declared_major": s.declared_major,
        "trigger": s.trigger,
        "run_id": str(run.id),
    }


def _dispatch(run: TrainingRun, step: str, attempt: int, kind: str) -> list[Outgoing]:
    """Record the attempt, and send its step command at the same time: the two travel side by
    side, and the worker starts only once the dispatch is in the event store (the attempt and
    its deadline are facts before any work), so a step costs one command's trip, not two."""
    inputs = inputs_for(run, step, kind)
    dispatch = _send(run, "DispatchStep", step=step, attempt=attempt, kind=kind, inputs=inputs)
    return [dispatch, step_message(run, step, attempt, kind, inputs)]


def _after_compensation_step(run: TrainingRun) -> list[Outgoing]:
    nxt = run.next_compensation()
    if nxt is not None:
        return _dispatch(run, nxt, run.attempts.get((nxt, "compensate"), 0) + 1, "compensate")
    cancelled = run.cause is not None and run.cause.cause == "cancelled"
    return [_send(run, "FinishTraining", outcome="cancelled" if cancelled else "failed")]


def _compensate(run: TrainingRun, cause: str, step: str | None, error: str) -> list[Outgoing]:
    return [_send(run, "BeginCompensation", cause=cause, failed_step=step, error=error[:1000])]


def _after_failure(run: TrainingRun, event: StepFailed | StepTimedOut) -> list[Outgoing]:
    assert run.started is not None
    permanent = isinstance(event, StepFailed) and event.permanent
    exhausted = event.attempt >= run.started.max_attempts
    if event.kind == "compensate":
        if permanent or exhausted:  # recorded as not compensated; go on with the others
            return _after_compensation_step(run)
        return [_retry(run, event)]
    if run.cancel_reason is not None:
        return _compensate(run, "cancelled", None, run.cancel_reason)
    if permanent or exhausted:
        if isinstance(event, StepTimedOut):
            error = f"deadline {event.deadline_at} passed (attempt {event.attempt})"
            return _compensate(run, "timed_out", event.step, error)
        return _compensate(run, "failed", event.step, event.error)
    return [_retry(run, event)]


def _retry(run: TrainingRun, event: StepFailed | StepTimedOut) -> Send:
    nxt = event.attempt + 1
    return _send(
        run,
        "ScheduleRetry",
        step=event.step,
        attempt=nxt,
        kind=event.kind,
        backoff_s=backoff_s(run, event.step, nxt),
    )


def _after_success(run: TrainingRun, event: StepSucceeded) -> list[Outgoing]:
    if event.kind == "compensate":
        return _after_compensation_step(run)
    if run.cancel_reason is not None:
        return _compensate(run, "cancelled", None, run.cancel_reason)
    nxt = run.next_step()
    if nxt is None:
        return [_send(run, "FinishTraining", outcome="completed")]
    return _dispatch(run, nxt, run.attempts.get((nxt, "run"), 0) + 1, "run")


def step_message(
    run: TrainingRun, step: str, attempt: int, kind: str, inputs: dict[str, Any]
) -> StepMessage:
    s = run.started
    assert s is not None
    faults = (s.faults or {}).get("steps", {}).get(step, {})
    payload = {
        "saga_id": str(run.id),
        "step": step,
        "attempt": attempt,
        "kind": kind,
        "inputs": inputs,
        "faults": {**faults, "noop": bool((s.faults or {}).get("noop"))},
    }
    return StepMessage(f"step:{run.id}:{step}:{kind}:{attempt}", payload, str(run.id))


def policy(run: TrainingRun, event: DomainEvent) -> list[Outgoing]:
    """What to do now that `event` happened; `run` is the state with `event` applied."""
    match event:
        case TrainingStarted():
            return _dispatch(run, run.started.steps[0] if run.started else "", 1, "run")
        case StepSucceeded():
            return _after_success(run, event)
        case StepFailed() | StepTimedOut():
            return _after_failure(run, event)
        case CancellationRequested() if run.open is None and run.status == "running":
            return _compensate(run, "cancelled", None, event.reason)
        case CompensationStarted():
            return _after_compensation_step(run)
    return []


def timers(run: TrainingRun) -> list[Timer]:
    """The times the run's state asks to be woken at: an attempt's deadline, a retry's due time."""
    out = []
    if run.open is not None:
        o = run.open
        out.append(
            Timer(datetime.fromisoformat(o.deadline_at), f"deadline:{o.step}:{o.kind}:{o.attempt}")
        )
    if run.retry is not None:
        r = run.retry
        out.append(Timer(datetime.fromisoformat(r.due_at), f"retry:{r.step}:{r.kind}:{r.attempt}"))
    return out


def on_timer(run: TrainingRun, key: str) -> list[Outgoing]:
    """A timer fired: if the state still asks for it, act (a stale timer does nothing)."""
    what, step, kind, attempt = key.split(":")
    n = int(attempt)
    if (
        what == "deadline"
        and run.open is not None
        and (run.open.step, run.open.kind, run.open.attempt) == (step, kind, n)
    ):
        return [_send(run, "RecordStepTimeout", step=step, attempt=n, kind=kind)]
    if (
        what == "retry"
        and run.retry is not None
        and (run.retry.step, run.retry.kind, run.retry.attempt) == (step, kind, n)
    ):
        return _dispatch(run, step, n, kind)
    return []

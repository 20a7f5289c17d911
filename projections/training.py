"""Projection of training events into rm_training_runs (one row per run: status, request, gate
results, compensations, live progress) and rm_training_steps (one row per attempt of a step or of
its compensation: timings, result, error). Pure functions from an event to row operations."""

from __future__ import annotations

from typing import Any

from projections.ops import Event, Insert, Op, Projection, Update

RUNS, STEPS = "rm_training_runs", "rm_training_steps"


def _run(e: Event, set_: dict[str, Any] | None = None, **append: Any) -> Update:
    return Update(
        RUNS,
        "run_id",
        e.aggregate_id,
        set={**(set_ or {}), "updated_at": e.occurred_at},
        append=append,
    )


def attempt_key(run_id: str, kind: str, step: str, attempt: int) -> str:
    return f"{run_id}/{kind}/{step}/{attempt}"


def _attempt(e: Event, **set_: Any) -> Update:
    p = e.payload
    key = attempt_key(e.aggregate_id, p["kind"], p["step"], p["attempt"])
    return Update(STEPS, "attempt_key", key, set=set_)


def training_started(e: Event) -> list[Op]:
    p = e.payload
    row = {
        "run_id": e.aggregate_id,
        "model_name": p["model_name"],
        "dataset_uri": p["dataset_uri"],
        "status": "running",
        "requested_by": p["requested_by"],
        "hyperparameters": p["hyperparameters"],
        "gates": p["gates"],
        "trigger": p["trigger"],
        "current_step": None,
        "gate_results": [],
        "compensations": [],
        "progress": [],
        "retries": [],
        "cause": None,
        "failed_step": None,
        "error": None,
        "version": None,
        "artifact_sha256": None,
        "submission_id": None,
        "created_at": e.occurred_at,
        "updated_at": e.occurred_at,
    }
    return [Insert(RUNS, row)]


def step_dispatched(e: Event) -> list[Op]:
    p = e.payload
    row = {
        "attempt_key": attempt_key(e.aggregate_id, p["kind"], p["step"], p["attempt"]),
        "run_id": e.aggregate_id,
        "step": p["step"],
        "kind": p["kind"],
        "attempt": p["attempt"],
        "status": "running",
        "dispatched_at": e.occurred_at,
        "deadline_at": p["deadline_at"],
        "finished_at": None,
        "duration_s": None,
        "result": None,
        "error": None,
    }
    current = p["step"] if p["kind"] == "run" else f"compensate:{p['step']}"
    return [Insert(STEPS, row), _run(e, {"current_step": current})]


def step_succeeded(e: Event) -> list[Op]:
    p = e.payload
    ops: list[Op] = [
        _attempt(
            e,
            status="succeeded",
            finished_at=e.occurred_at,
            duration_s=p["duration_s"],
            result=p["result"],
        )
    ]
    if p["kind"] == "compensate":
        entry = {
            "step": p["step"],
            "attempt": p["attempt"],
            "at": e.occurred_at.isoformat(),
            "result": p["result"],
        }
        ops.append(_run(e, compensations=[entry]))
    elif p["step"] == "model_validation":
        ops.append(_run(e, {"gate_results": p["result"].get("gates", [])}))
    return ops


def step_failed(e: Event) -> list[Op]:
    p = e.payload
    ops: list[Op] = [
        _attempt(
            e,
            status="failed",
            finished_at=e.occurred_at,
            error=p["error"],
            result=p.get("detail") or None,
        )
    ]
    gates = (p.get("detail") or {}).get("gates")
    if p["step"] == "model_validation" and gates:
        ops.append(_run(e, {"gate_results": gates}))
    return ops


def step_timed_out(e: Event) -> list[Op]:
    return [
        _attempt(
            e,
            status="timed_out",
            finished_at=e.occurred_at,
            error=f"deadline {e.payload['deadline_at']} passed",
        )
    ]


def step_retry_scheduled(e: Event) -> list[Op]:
    p = e.payload
    entry = {k: p[k] for k in ("step", "kind", "attempt", "due_at", "backoff_s")}
    return [_run(e, retries=[entry])]


def training_progressed(e: Event) -> list[Op]:
    p = e.payload
    point = {
        k: p.get(k) for k in ("step", "attempt", "epoch", "loss", "accuracy", "holdout_accuracy")
    }
    return [_run(e, progress=[point])]


def compensation_started(e: Event) -> list[Op]:
    p = e.payload
    return [
        _run(
            e,
            {
                "status": "compensating",
                "cause": p["cause"],
                "failed_step": p["failed_step"],
                "error": p["error"],
            },
        )
    ]


def cancellation_requested(e: Event) -> list[Op]:
    return [
        _run(
            e, {"error": f"cancel requested by {e.payload['requested_by']}: {e.payload['reason']}"}
        )
    ]


def training_completed(e: Event) -> list[Op]:
    p = e.payload
    return [
        _run(
            e,
            {
                "status": "completed",
                "current_step": None,
                "version": p["version"],
                "artifact_sha256": p["artifact_sha256"],
                "submission_id": p["submission_id"],
            },
        )
    ]


def training_failed(e: Event) -> list[Op]:
    p = e.payload
    return [
        _run(
            e,
            {
                "status": "failed",
                "current_step": None,
                "cause": p["cause"],
                "failed_step": p["failed_step"],
                "error": p["error"],
            },
        )
    ]


def training_cancelled(e: Event) -> list[Op]:
    return [
        _run(
            e,
            {
                "status": "cancelled",
                "current_step": None,
                "cause": "cancelled",
                "error": e.payload["reason"],
            },
        )
    ]


PROJECTIONS: dict[str, Projection] = {
    "TrainingStarted": training_started,
    "StepDispatched": step_dispatched,
    "StepSucceeded": step_succeeded,
    "StepFailed": step_failed,
    "StepTimedOut": step_timed_out,
    "StepRetryScheduled": step_retry_scheduled,
    "TrainingProgressed": training_progressed,
    "CancellationRequested": cancellation_requested,
    "CompensationStarted": compensation_started,
    "TrainingCompleted": training_completed,
    "TrainingFailed": training_failed,
    "TrainingCancelled": training_cancelled,
}

"""One step command in, one outcome out: the step (or its compensation) run with the saga's
fault plan applied, its errors sorted into permanent and transient, and its duration."""

from __future__ import annotations

import time
from typing import Any

from infra.faults import transient
from steps import prepare, register, train, validate
from steps.context import PermanentFailure, StepContext, TransientFailure

NOOP_RESULTS: dict[str, dict[str, Any]] = {
    "data_preparation": {"snapshot": None, "dataset_sha256": "0" * 64, "noop": True},
    "model_training": {"artifact_sha256": "0" * 64, "manifest_sha256": "0" * 64, "noop": True},
    "model_validation": {"passed": True, "gates": [], "noop": True},
    "model_registration": {"version": "0.0.0", "submission_id": None, "noop": True},
}


def _run(cmd: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    saga, step, attempt, inputs = cmd["saga_id"], cmd["step"], cmd["attempt"], cmd["inputs"]
    if cmd["kind"] == "compensate":
        undo = {"data_preparation": prepare.compensate, "model_training": train.compensate}
        return undo.get(step, register.compensate)(saga, inputs, ctx)
    if step == "data_preparation":
        return prepare.run(saga, inputs, ctx)
    if step == "model_training":
        return train.run(saga, attempt, inputs, ctx)
    if step == "model_validation":
        return validate.run(saga, attempt, inputs, ctx)
    return register.run(saga, inputs, ctx)


def _injected(cmd: dict[str, Any], ctx: StepContext) -> dict[str, Any] | None:
    """Fault injection (tests and benchmarks; StartTraining refuses it unless it is switched on)."""
    faults = cmd.get("faults") or {}
    if cmd["attempt"] <= int(faults.get("transient_failures", 0)):
        raise TransientFailure(f"injected transient failure of attempt {cmd['attempt']}")
    if faults.get("permanent"):
        raise PermanentFailure(f"injected: {faults['permanent']}")
    if faults.get("hang_s"):
        time.sleep(min(float(faults["hang_s"]), ctx.seconds_left() + 1))
    if faults.get("noop"):
        return {} if cmd["kind"] == "compensate" else dict(NOOP_RESULTS[cmd["step"]])
    if faults.get("nan_loss") and cmd["step"] == "model_training":
        cmd["inputs"] = {**cmd["inputs"], "inject_nan_loss": True}
    return None


def execute(cmd: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """The RecordStepResult fields for one step command."""
    started = time.monotonic()
    try:
        result = _injected(cmd, ctx)
        if result is None:
            result = _run(cmd, ctx)
        out: dict[str, Any] = {"outcome": "succeeded", "result": result}
    except PermanentFailure as exc:
        out = {
            "outcome": "failed",
            "error": str(exc)[:1000],
            "permanent": True,
            "result": exc.detail,
        }
    except TransientFailure as exc:
        out = {"outcome": "failed", "error": str(exc)[:1000], "permanent": False}
    except Exception as exc:
        # A dependency away is worth another attempt; anything else would fail the same way.
        why = f"{type(exc).__name__}: {exc}"[:1000]
        out = {"outcome": "failed", "error": why, "permanent": not transient(exc)}
    return {**out, "duration_s": round(time.monotonic() - started, 3)}

"""model_training: the torch MLP trained in a child process (ml.job) from the snapshot, its
safetensors artifact and manifest kept in the content-addressed store, each epoch reported as
progress; the data_drift gate is measured beside it (steps.beside). Compensation deletes the artifact unless a registered version still references it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml import child
from ml.errors import PermanentStepError, StepTimeout, TransientStepError
from steps.beside import measured, start_drift
from steps.context import PermanentFailure, StepContext, TransientFailure


def run(saga_id: str, attempt: int, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    work = ctx.work_dir(saga_id, "model_training", attempt)
    snapshot = str(Path(inputs["snapshot"]).resolve())
    job = {
        "kind": "train",
        "inputs": {
            "snapshot_dir": snapshot,
            "hyperparameters": inputs["hyperparameters"],
            "device": "auto",
            **({"inject_nan_loss": True} if inputs.get("inject_nan_loss") else {}),
        },
    }
    # The data_drift gate needs no model: measured now, beside the torch child.
    drift = start_drift(snapshot, work / "drift", ctx.seconds_left())
    try:
        out = child.run_job(job, work, ctx.seconds_left(), _epochs(ctx))
    except PermanentStepError as exc:
        raise PermanentFailure(f"training failed: {exc}") from exc
    except (TransientStepError, StepTimeout) as exc:
        raise TransientFailure(f"training did not finish: {exc}") from exc
    data_drift = measured(drift)
    art = out["artifact"]
    model_sha = ctx.artifacts.put_file(Path(art["dir"]) / art["model_file"])
    manifest_sha = ctx.artifacts.put_file(Path(art["dir"]) / art["manifest_file"])
    last = out["history"][-1] if out["history"] else {}
    return {
        "artifact_sha256": model_sha,
        "manifest_sha256": manifest_sha,
        "size_bytes": art["size_bytes"],
        "epochs": len(out["history"]),
        "final": {k: last.get(k) for k in ("loss", "accuracy", "holdout_accuracy")},
        "duration_s": out["duration_s"],
        "environment": out["environment"],
        "code_revision": out["code_revision"],
        **({"data_drift": data_drift} if data_drift is not None else {}),
    }


def _epochs(ctx: StepContext) -> child.ProgressCallback:
    def on_line(line: dict[str, Any]) -> None:
        if line.get("event") == "epoch":
            ctx.progress(line)

    return on_line


def compensate(saga_id: str, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    deleted, kept = [], []
    for sha in (inputs.get("artifact_sha256"), inputs.get("manifest_sha256")):
        if not sha:
            continue
        if _referenced(sha, ctx):
            kept.append(sha)  # a registered version still points at it
        elif ctx.artifacts.delete(sha):
            deleted.append(sha)
    return {"deleted": deleted, "kept_referenced": kept}


def _referenced(sha: str, ctx: StepContext) -> bool:
    with ctx.read_connection() as conn:
        row = conn.execute(
            "SELECT 1 FROM rm_model_versions WHERE stage <> 'archived' AND"
            " (artifact->>'sha256' = %s OR artifact->>'manifest_sha256' = %s) LIMIT 1",
            (sha, sha),
        ).fetchone()
    return row is not None

"""model_validation: seed 004's quality gates, in a child process, on the holdout split, against
the current production version measured in the same process when there is one (the data_drift
gate in a second child beside it). A failed gate is
a permanent failure whose detail carries every gate with its measured value."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ml import child
from ml.errors import PermanentStepError, StepTimeout, TransientStepError
from ml.gates import DRIFT_SHARE, at_share, with_drift
from steps.beside import ignore, start_drift
from steps.context import PermanentFailure, StepContext, TransientFailure


def _materialise(ctx: StepContext, model_sha: str, manifest_sha: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ctx.artifacts.path_of(model_sha), directory / "model.safetensors")
    shutil.copyfile(ctx.artifacts.path_of(manifest_sha), directory / "manifest.json")
    return directory


def production(ctx: StepContext, model_name: str) -> tuple[str, dict[str, Any]] | None:
    """(version, artifact object) of the model's production version, when it has one."""
    with ctx.read_connection() as conn:
        row = conn.execute(
            "SELECT v.version, v.artifact FROM rm_models m JOIN rm_model_versions v"
            " ON v.model_name = m.name AND v.version = m.production_version WHERE m.name = %s",
            (model_name,),
        ).fetchone()
    return (str(row[0]), dict(row[1])) if row else None


def _measured(
    job: dict[str, Any], work: Path, ctx: StepContext, measured: dict[str, Any] | None
) -> dict[str, Any]:
    """The validation report, with the data_drift gate that training measured beside it (or,
    without one, measured now in a second child beside this one)."""
    inputs = job["inputs"]
    share = float(inputs["thresholds"].get("drift_share", DRIFT_SHARE))
    measure = {**job, "inputs": {**inputs, "check_drift": False}}
    if measured is not None:
        report = child.run_job(measure, work, ctx.seconds_left(), ignore)["report"]
        return with_drift(report, at_share(measured, share))
    gate = start_drift(inputs["snapshot_dir"], work / "drift", ctx.seconds_left())
    report = child.run_job(measure, work, ctx.seconds_left(), ignore)["report"]
    return with_drift(report, at_share(gate.result()["gate"], share))


def run(saga_id: str, attempt: int, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    work = ctx.work_dir(saga_id, "model_validation", attempt)
    trained = inputs["training"]
    candidate = _materialise(
        ctx, trained["artifact_sha256"], trained["manifest_sha256"], work / "candidate"
    )
    prod = production(ctx, inputs["model_name"])
    prod_dir = None
    if (
        prod is not None
        and ctx.artifacts.has(prod[1].get("sha256", ""))
        and prod[1].get("manifest_sha256")
    ):
        prod_dir = _materialise(
            ctx, prod[1]["sha256"], prod[1]["manifest_sha256"], work / "production"
        )
    gates = inputs.get("gates") or {}
    job = {
        "kind": "validate",
        "inputs": {
            "snapshot_dir": str(Path(inputs["snapshot"]).resolve()),
            "candidate_dir": str(candidate.resolve()),
            "production_dir": str(prod_dir.resolve()) if prod_dir else None,
            "min_accuracy": float(gates.get("min_accuracy", 0.0)),
            "declared_major": bool(inputs.get("declared_major", False)),
            "thresholds": {
                k: gates[k]
                for k in ("accuracy_ratio", "latency_ratio", "memory_ratio", "drift_share")
                if k in gates
            },
        },
    }
    try:
        report = _measured(job, work, ctx, trained.get("data_drift"))
    except PermanentStepError as exc:
        raise PermanentFailure(f"validation failed: {exc}") from exc
    except (TransientStepError, StepTimeout) as exc:
        raise TransientFailure(f"validation did not finish: {exc}") from exc
    baseline = prod[0] if prod is not None and prod_dir is not None else None
    if not report["passed"]:
        failed = [
            f"{g['gate']}: {g.get('value')} vs {g.get('threshold')}"
            for g in report["gates"]
            if not g["passed"]
        ]
        raise PermanentFailure(
            "quality gate failed: " + "; ".join(failed),
            {"gates": report["gates"], "metrics": report["metrics"], "baseline_version": baseline},
        )
    return {
        "passed": True,
        "gates": report["gates"],
        "metrics": report["metrics"],
        "baseline_version": baseline,
    }

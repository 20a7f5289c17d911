"""``python -m ml.job <job.json>``: one training or validation step in its own process.

The job (UTF-8 JSON)::

    {"kind": "train",
     "inputs": {"snapshot_dir": "/abs/snap", "hyperparameters": {"epochs": 20, ...},
                "device": "auto"},
     "output_dir": "/abs/out"}

    {"kind": "validate",
     "inputs": {"snapshot_dir": "/abs/snap", "candidate_dir": "/abs/cand",
                "production_dir": "/abs/prod" | null, "min_accuracy": 0.9,
                "declared_major": false, "check_drift": true,
                "thresholds": {"accuracy_ratio": 0.95, ...}},
     "output_dir": "/abs/out"}

    {"kind": "drift", "inputs": {"snapshot_dir": "/abs/snap", "drift_share": 0.3},
     "output_dir": "/abs/out"}

Progress goes to stdout as JSON lines (``{"event": "started"|"epoch"|"done", ...}``; an epoch is
``{"event":"epoch","epoch":3,"loss":..,"accuracy":..,"holdout_loss":..,"holdout_accuracy":..}``);
anything else the libraries print goes to stderr. The outcome is ``<output_dir>/result.json``
(beside the job file when the job names no usable output_dir): ``{"ok": true, "kind": ...}``
plus the step's outputs, or ``{"ok": false, "error", "error_type", "permanent"}``.
Training writes ``model.safetensors`` and ``manifest.json`` into ``output_dir``; validation
writes ``report.json``; the drift job's result holds its ``gate``. Exit codes: 0 success, 3 permanent failure, 1 anything else.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from ml.environment import code_revision, environment
from ml.errors import InvalidJob, PermanentError
from ml.util import atomic_write, pretty_json

RESULT_FILE = "result.json"
REPORT_FILE = "report.json"
EXIT_OK, EXIT_FAILED, EXIT_PERMANENT = 0, 1, 3


class Progress:
    """JSON lines on the process's original stdout."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **fields}, allow_nan=True) + "\n")
        self.stream.flush()


def _require(inputs: dict[str, Any], key: str) -> Any:
    if key not in inputs:
        raise InvalidJob(f"the job's inputs lack {key!r}")
    return inputs[key]


def _dir(inputs: dict[str, Any], key: str) -> Path:
    value = _require(inputs, key)
    if not isinstance(value, str) or not Path(value).is_absolute():
        raise InvalidJob(f"inputs.{key} must be an absolute path, got {value!r}")
    return Path(value)


def run_train(inputs: dict[str, Any], out: Path, progress: Progress) -> dict[str, Any]:
    from ml.prepare import load_snapshot
    from ml.train import Hyperparameters, save_artifact, train

    hp = Hyperparameters.from_dict(dict(inputs.get("hyperparameters") or {}))
    snapshot = load_snapshot(_dir(inputs, "snapshot_dir"))
    if inputs.get("inject_nan_loss"):  # fault injection: a NaN input row makes the loss NaN
        import dataclasses

        poisoned = snapshot.X_train.copy()
        poisoned[0, :] = float("nan")
        snapshot = dataclasses.replace(snapshot, X_train=poisoned)
    device = str(inputs.get("device", "auto"))
    result = train(snapshot, hp, device, on_epoch=lambda r: progress("epoch", **r))
    artifact = save_artifact(result, out)
    return {
        "artifact": {
            "dir": str(out),
            "model_file": artifact.model_path.name,
            "manifest_file": artifact.manifest_path.name,
            "sha256": artifact.sha256,
            "size_bytes": artifact.size_bytes,
        },
        "manifest": result.manifest,
        "history": result.history,
        "duration_s": result.duration_s,
        "environment": environment(result.device, result.device_name),
        "code_revision": code_revision(),
    }


def run_validate(inputs: dict[str, Any], out: Path, progress: Progress) -> dict[str, Any]:
    from ml.prepare import load_snapshot
    from ml.validate import Thresholds, validate

    production = inputs.get("production_dir")
    try:
        thresholds = Thresholds(**dict(inputs.get("thresholds") or {}))
    except TypeError as exc:
        raise InvalidJob(f"inputs.thresholds: {exc}") from exc
    report = validate(
        load_snapshot(_dir(inputs, "snapshot_dir")),
        _dir(inputs, "candidate_dir"),
        _dir(inputs, "production_dir") if production is not None else None,
        min_accuracy=float(_require(inputs, "min_accuracy")),
        declared_major=bool(inputs.get("declared_major", False)),
        thresholds=thresholds,
        check_drift=bool(inputs.get("check_drift", True)),
    )
    for g in report.gates:
        progress("gate", **g)
    atomic_write(out / REPORT_FILE, pretty_json(report.to_dict()))
    return {"report": report.to_dict(), "report_file": REPORT_FILE}


def run_drift(inputs: dict[str, Any], out: Path, progress: Progress) -> dict[str, Any]:
    """The data_drift gate alone (no torch): run beside a validate job with check_drift false."""
    from ml.gates import DRIFT_SHARE, drift_gate
    from ml.prepare import load_snapshot

    share = inputs.get("drift_share", DRIFT_SHARE)
    if not isinstance(share, int | float) or isinstance(share, bool):
        raise InvalidJob(f"inputs.drift_share must be a number, got {share!r}")
    result = drift_gate(load_snapshot(_dir(inputs, "snapshot_dir")), float(share))
    progress("gate", **result)
    return {"gate": result}


RUNNERS = {"train": run_train, "validate": run_validate, "drift": run_drift}


def read_job(path: Path) -> tuple[dict[str, Any], Path]:
    """The job and its output directory; ``InvalidJob`` when either is malformed."""
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidJob(f"cannot read the job {path}: {exc}") from exc
    if not isinstance(job, dict) or job.get("kind") not in RUNNERS:
        raise InvalidJob(f"the job's kind must be one of {sorted(RUNNERS)}")
    out = job.get("output_dir")
    if not isinstance(out, str) or not Path(out).is_absolute():
        raise InvalidJob(f"output_dir must be an absolute path, got {out!r}")
    if not isinstance(job.get("inputs"), dict):
        raise InvalidJob("the job's inputs must be an object")
    return job, Path(out)


def _failure(exc: BaseException, permanent: bool) -> dict[str, Any]:
    return {
        "ok": False,
        "error": str(exc) or type(exc).__name__,
        "error_type": type(exc).__name__,
        "permanent": permanent,
    }


def execute(job_path: Path, progress: Progress) -> int:
    """Run the job, write its result file, and return the exit code."""
    result_path = job_path.with_name(RESULT_FILE)
    try:
        job, out = read_job(job_path)
        result_path = out / RESULT_FILE
        progress("started", kind=job["kind"])
        result = {
            "ok": True,
            "kind": job["kind"],
            **RUNNERS[job["kind"]](job["inputs"], out, progress),
        }
        code = EXIT_OK
    except PermanentError as exc:
        result, code = _failure(exc, permanent=True), EXIT_PERMANENT
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result, code = _failure(exc, permanent=False), EXIT_FAILED
    atomic_write(result_path, pretty_json(result))
    progress("done", ok=result["ok"])
    return code


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m ml.job <job.json>", file=sys.stderr)
        return EXIT_FAILED
    # Progress owns the real stdout; whatever else writes to fd 1 lands on stderr instead.
    progress_stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return execute(Path(argv[1]), Progress(progress_stream))


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""ml.child / ml.job: training and validation in a child process; the parent never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from ml import prepare
from ml.child import outcome, run_job
from ml.errors import PermanentStepError, StepTimeout, TransientStepError
from ml.util import sha256_file
from tests.unit.ml_support import digits_snapshot

ROOT = Path(__file__).resolve().parents[2]
TORCH_FREE = ["ml", "ml.child", "ml.datasets", "ml.prepare", "ml.store", "ml.signing", "ml.semver",
              "ml.card", "ml.environment", "ml.numpy_forward", "ml.scan", "ml.errors", "ml.util",
              "ml.gates"]  # fmt: skip


@pytest.fixture(scope="module")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("snapshot")
    prepare.save_snapshot(digits_snapshot(), directory)
    return directory


def _train_job(snapshot_dir: Path, **hp: Any) -> dict[str, Any]:
    return {
        "kind": "train",
        "inputs": {"snapshot_dir": str(snapshot_dir), "hyperparameters": hp, "device": "cpu"},
    }


def test_training_in_a_child_streams_epochs_and_writes_the_artifact(
    snapshot_dir: Path, tmp_path: Path
) -> None:
    events: list[dict[str, Any]] = []
    result = run_job(_train_job(snapshot_dir, epochs=3), tmp_path / "train", 120, events.append)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert {"loss", "accuracy", "holdout_accuracy"} <= set(epochs[0])
    assert events[0] == {"event": "started", "kind": "train"} and events[-1]["event"] == "done"
    artifact = result["artifact"]
    assert artifact["sha256"] == sha256_file(tmp_path / "train" / "model.safetensors")
    assert result["ok"] and result["manifest"]["hyperparameters"]["epochs"] == 3
    assert result["environment"]["device"] == "cpu" and len(result["history"]) == 3
    assert json.loads((tmp_path / "train" / "result.json").read_text()) == result

    report_events: list[dict[str, Any]] = []
    job = {"kind": "validate", "inputs": {
        "snapshot_dir": str(snapshot_dir), "candidate_dir": str(tmp_path / "train"),
        "production_dir": None, "min_accuracy": 0.5, "check_drift": False}}  # fmt: skip
    validated = run_job(job, tmp_path / "validate", 120, report_events.append)
    assert validated["report"]["passed"] is True
    assert {e["gate"] for e in report_events if e["event"] == "gate"} >= {
        "accuracy_min",
        "security_scan",
    }
    assert (tmp_path / "validate" / "report.json").is_file()


def test_the_drift_job_measures_the_data_drift_gate_without_torch(
    snapshot_dir: Path, tmp_path: Path
) -> None:
    events: list[dict[str, Any]] = []
    job = {"kind": "drift", "inputs": {"snapshot_dir": str(snapshot_dir), "drift_share": 0.25}}
    gate = run_job(job, tmp_path, 120, events.append)["gate"]
    assert gate["gate"] == "data_drift" and gate["threshold"] == 0.25
    assert gate["passed"] is (gate["value"] <= 0.25) and gate["passed"]  # a random split
    assert [e["gate"] for e in events if e["event"] == "gate"] == ["data_drift"]
    with pytest.raises(PermanentStepError, match="drift_share must be a number"):
        bad = {"kind": "drift", "inputs": {"snapshot_dir": str(snapshot_dir), "drift_share": "x"}}
        run_job(bad, tmp_path / "bad", 60, lambda e: None)


def test_a_diverging_run_is_a_permanent_step_error(snapshot_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PermanentStepError, match="exceeds 100x"):
        run_job(
            _train_job(snapshot_dir, epochs=3, learning_rate=1e6), tmp_path, 120, lambda e: None
        )
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["permanent"] is True and result["error_type"] == "TrainingDiverged"


def test_an_invalid_job_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentStepError, match="kind must be one of"):
        run_job({"kind": "deploy", "inputs": {}}, tmp_path, 60, lambda e: None)
    with pytest.raises(PermanentStepError, match="cannot read the snapshot"):
        run_job(_train_job(tmp_path / "nothing"), tmp_path, 60, lambda e: None)


def test_a_child_past_its_timeout_is_killed(snapshot_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(StepTimeout) as caught:
        run_job(_train_job(snapshot_dir, epochs=100_000), tmp_path, 4, lambda e: None)
    assert time.monotonic() - started < 30
    assert not psutil.pid_exists(caught.value.pid)


def test_a_failing_progress_callback_kills_the_child(snapshot_dir: Path, tmp_path: Path) -> None:
    pids: list[int] = []

    def stop(event: dict[str, Any]) -> None:
        pids.extend(p.pid for p in psutil.Process().children())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(_train_job(snapshot_dir, epochs=100_000), tmp_path, 60, stop)
    assert pids and not any(psutil.pid_exists(p) for p in pids)


def test_exit_codes_map_to_typed_errors() -> None:
    assert outcome(0, {"ok": True, "x": 1}, "") == {"ok": True, "x": 1}
    with pytest.raises(PermanentStepError, match="bad data"):
        outcome(3, {"ok": False, "error": "bad data", "permanent": True}, "")
    with pytest.raises(TransientStepError, match="exited 1: boom"):
        outcome(1, {"ok": False, "error": "boom"}, "Traceback ...")
    with pytest.raises(TransientStepError, match="killed by signal 9: no result file"):
        outcome(-9, None, "")
    with pytest.raises(TransientStepError, match="no result file"):
        outcome(0, None, "")


def _run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                         capture_output=True, text=True, timeout=240, check=True)  # fmt: skip
    return out.stdout.strip()


def test_the_parent_never_imports_torch(snapshot_dir: Path, tmp_path: Path) -> None:
    job = json.dumps(_train_job(snapshot_dir, epochs=1))
    out = _run_python(f"""
        import json, sys
        from pathlib import Path
        from ml.child import run_job
        events = []
        result = run_job(json.loads({job!r}), Path({str(tmp_path)!r}), 120, events.append)
        print(result["ok"], len([e for e in events if e["event"] == "epoch"]), "torch" in sys.modules)
    """)
    assert out == "True 1 False"


def test_the_torch_free_modules_do_not_import_torch() -> None:
    out = _run_python(f"""
        import importlib, sys
        for name in {TORCH_FREE!r}:
            importlib.import_module(name)
        print("torch" in sys.modules)
    """)
    assert out == "False"

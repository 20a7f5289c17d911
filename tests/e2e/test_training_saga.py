"""The training saga on the real stack (Kafka, Postgres, the faust orchestrator, the step worker,
torch in child processes): digits trains to a signed, versioned, submitted model; every failure
gets exactly its compensations, newest first, and the right end; a transient failure is retried
and leaves nothing to compensate."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from config.settings import ROOT, Settings
from infra import keys
from ml.store import ArtifactStore
from tests import training_support as t

pytestmark = pytest.mark.timeout(900)


def _verify_outside(client: Any, s: Settings, name: str, version: str, tmp: Path) -> str:
    """The examples/ verifier, given only the artifact, its manifest, the signature and the
    public key (cryptography, hashlib and json)."""
    v = client.get(f"/models/{name}/versions/{version}").json()
    art = client.get(f"/models/{name}/versions/{version}/artifact")
    assert art.headers["x-artifact-sha256"] == v["artifact"]["sha256"]
    (tmp / "model.safetensors").write_bytes(art.content)
    manifest = client.get(f"/models/{name}/versions/{version}/manifest").content
    (tmp / "manifest.json").write_bytes(manifest)
    published = {k["key_id"]: k for k in keys.load(s).published()}
    (tmp / "key.pem").write_text(published[v["artifact"]["public_key_id"]]["public_key_pem"])
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "verify_artifact.py"), str(tmp / "model.safetensors"),
         str(tmp / "manifest.json"), v["artifact"]["signature"], str(tmp / "key.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip()


def test_digits_trains_to_a_signed_version_with_lineage_and_semver_by_rule(
    stack: Settings, tmp_path: Path
) -> None:
    client = t.api(stack)
    name = t.model(client, "digits")
    first = t.wait_run(client, t.start(client, name))
    assert first["status"] == "completed", first["error"]
    assert first["version"] == "1.0.0" and first["current_step"] is None
    v1 = client.get(f"/models/{name}/versions/1.0.0").json()
    assert v1["metrics"]["accuracy"] >= 0.95
    gates = {g["gate"]: g["passed"] for g in first["gate_results"]}
    assert gates["accuracy_min"] and gates["security_scan"] and gates["data_drift"]
    lineage = v1["lineage"]
    assert (
        lineage["parent_version"] is None
        and lineage["training_config"]["run_id"] == first["run_id"]
    )
    assert lineage["training_config"]["dataset_uri"] == "sklearn:digits"
    assert len(lineage["training_config"]["dataset_sha256"]) == 64
    assert {"python", "frameworks", "device", "platform"} <= set(lineage["environment"])
    assert _verify_outside(client, stack, name, "1.0.0", tmp_path).startswith("OK ")
    # The tampered artifact fails the same outside check.
    raw = bytearray((tmp_path / "model.safetensors").read_bytes())
    raw[-1] ^= 1
    (tmp_path / "model.safetensors").write_bytes(bytes(raw))
    bad = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "verify_artifact.py"), str(tmp_path / "model.safetensors"),
         str(tmp_path / "manifest.json"), v1["artifact"]["signature"], str(tmp_path / "key.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stdout.strip() == "BAD"
    card = client.get(f"/models/{name}/versions/1.0.0/card")
    assert card.status_code == 200 and f"# Model Card: {name}" in card.text and "1.0.0" in card.text
    subs = client.get("/governance/submissions", params={"model_name": name}).json()["items"]
    assert [(x["version"], x["target_stage"], x["status"]) for x in subs] == [
        ("1.0.0", "staging", "pending")
    ]
    # Other hyperparameters: PATCH, with the first version as parent.
    patch = t.wait_run(client, t.start(client, name, hyperparameters={"epochs": 22, "seed": 3}))
    assert patch["version"] == "1.0.1", patch["error"]
    rule = client.get(f"/models/{name}/versions/1.0.1/lineage").json()["lineage"]
    assert rule["parent_version"] == "1.0.0"
    assert rule["training_config"]["semver"]["bump"] == "patch"
    # Another feature set (iris: 4 features, 3 classes): MAJOR.
    major = t.wait_run(
        client, t.start(client, name, dataset_uri="sklearn:iris", hyperparameters={"epochs": 60})
    )
    assert major["version"] == "2.0.0", major["error"]
    semver = client.get(f"/models/{name}/versions/2.0.0/lineage").json()["lineage"][
        "training_config"
    ]["semver"]
    assert semver["bump"] == "major" and semver["inputs"]["input_schema_equal"] is False
    # The saga's own history is in the model's audit timeline, hash-chained with the rest.
    audit = subprocess.run(
        [sys.executable, "-m", "veritas.cli", "audit", name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr[-500:]
    assert "TrainingStarted" in audit.stdout and "TrainingCompleted" in audit.stdout
    assert "hash chains verified" in audit.stdout


def _failed(stack: Settings, run: dict[str, Any]) -> list[str]:
    events = t.stream(stack, run["run_id"])
    return t.steps_of(events, "StepSucceeded", "compensate")


def test_an_unreadable_dataset_fails_data_preparation_with_nothing_to_compensate(
    stack: Settings,
) -> None:
    client = t.api(stack)
    name = t.model(client, "nodata")
    run = t.wait_run(
        client, t.start(client, name, dataset_uri="file:///nonexistent/data.csv?target=y")
    )
    assert (run["status"], run["cause"], run["failed_step"]) == (
        "failed",
        "failed",
        "data_preparation",
    )
    assert "nonexistent" in run["error"]
    events = t.stream(stack, run["run_id"])
    assert t.types(events) == [
        "TrainingStarted", "StepDispatched", "StepFailed", "CompensationStarted", "TrainingFailed",
    ]  # fmt: skip
    assert events[-1].payload["compensated"] == []


def test_a_nan_loss_compensates_the_prepared_data(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "nan")
    faults = {"steps": {"model_training": {"nan_loss": True}}}
    run = t.wait_run(client, t.start(client, name, faults=faults))
    assert (run["status"], run["failed_step"]) == ("failed", "model_training")
    assert "loss" in run["error"].lower()
    assert _failed(stack, run) == ["data_preparation"]
    assert not (stack.var_dir / "snapshots" / run["run_id"]).exists()  # removed


def test_a_failed_gate_compensates_training_then_preparation(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "gate")
    run = t.wait_run(
        client, t.start(client, name, gates={"min_accuracy": 0.9999}, hyperparameters={"epochs": 3})
    )
    assert (run["status"], run["failed_step"]) == ("failed", "model_validation")
    assert "quality gate failed" in run["error"] and "accuracy" in run["error"]
    assert any(g["gate"] == "accuracy_min" and not g["passed"] for g in run["gate_results"])
    assert _failed(stack, run) == ["model_training", "data_preparation"]
    events = t.stream(stack, run["run_id"])
    trained = next(
        e for e in events if e.type == "StepSucceeded" and e.payload["step"] == "model_training"
    )
    store = ArtifactStore(stack.artifacts_dir)
    assert not store.has(trained.payload["result"]["artifact_sha256"])  # the artifact is deleted
    assert client.get(f"/models/{name}").json()["versions"] == []


def test_a_registration_the_registry_rejects_is_compensated(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "reject")
    ds = f"ds-{name}"
    # A registered dataset whose checksum is not the data's: the registry refuses the lineage.
    body = t.command(
        client,
        "RegisterDataset",
        {"name": ds, "version": "1.0.0", "uri": "sklearn:iris", "checksum": "e" * 64},
    )
    assert body["status"] == "accepted", body
    run = t.wait_run(
        client,
        t.start(client, name, dataset_uri=f"dataset:{ds}@1.0.0", hyperparameters={"epochs": 30}),
    )
    assert (run["status"], run["failed_step"]) == ("failed", "model_registration")
    assert "dataset_checksum_mismatch" in run["error"]
    assert _failed(stack, run) == ["model_training", "data_preparation"]
    assert client.get(f"/models/{name}").json()["versions"] == []


def test_a_step_that_times_out_is_retried_then_compensated(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "slow")
    faults = {"noop": True, "steps": {"model_validation": {"hang_s": 30}}}
    run = t.wait_run(
        client, t.start(client, name, faults=faults, deadlines_s={"model_validation": 3})
    )
    assert (run["status"], run["cause"], run["failed_step"]) == (
        "failed",
        "timed_out",
        "model_validation",
    )
    events = t.stream(stack, run["run_id"])
    assert t.types(events).count("StepTimedOut") == 3
    assert [r["attempt"] for r in run["retries"]] == [2, 3]
    assert _failed(stack, run) == ["model_training", "data_preparation"]


def test_cancel_mid_run_compensates_what_completed(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "cancel")
    faults = {"noop": True, "steps": {"model_training": {"hang_s": 4}}}
    run_id = t.start(client, name, faults=faults)
    t.wait_run(client, run_id, until=("running",))
    deadline = time.monotonic() + 60
    while "model_training" not in (
        client.get(f"/training/runs/{run_id}").json()["current_step"] or ""
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    body = t.command(client, "CancelTraining", {"run_id": run_id, "reason": "wrong data"})
    assert body["status"] == "accepted", body
    run = t.wait_run(client, run_id)
    assert run["status"] == "cancelled" and run["error"] == "wrong data"
    assert _failed(stack, run) == ["model_training", "data_preparation"]
    assert t.types(t.stream(stack, run_id))[-1] == "TrainingCancelled"


def test_a_transient_failure_is_retried_and_leaves_no_compensation(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "flaky")
    faults = {"noop": True, "steps": {"data_preparation": {"transient_failures": 1}}}
    run = t.wait_run(client, t.start(client, name, faults=faults))
    assert run["status"] == "completed"
    events = t.stream(stack, run["run_id"])
    assert "CompensationStarted" not in t.types(events)
    assert [(r["step"], r["attempt"]) for r in run["retries"]] == [("data_preparation", 2)]
    attempts = [
        (s["step"], s["attempt"], s["status"])
        for s in run["steps"]
        if s["step"] == "data_preparation"
    ]
    assert attempts == [("data_preparation", 1, "failed"), ("data_preparation", 2, "succeeded")]


def test_fault_injection_and_bad_requests_get_clear_reasons(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "bad")
    bad = t.command(client, "StartTraining", {"model_name": name, "dataset_uri": "ftp://x"})
    assert bad["status"] == "rejected" and bad["reason_code"] == "schema_violation"
    unknown = t.command(
        client, "StartTraining", {"model_name": "no-such-model", "dataset_uri": "sklearn:iris"}
    )
    assert unknown["reason_code"] == "not_found"
    forged = client.post(
        "/commands",
        json={
            "type": "RecordStepResult",
            "payload": {
                "run_id": "00000000-0000-0000-0000-000000000000",
                "step": "model_training",
                "attempt": 1,
                "outcome": "succeeded",
            },
        },
    )
    # Only the saga's service principal reports steps.
    assert forged.status_code == 403 and forged.json()["reason_code"] == "forbidden"


def _kill_when(stack: Settings, client: Any, run_id: str, victim: str, step: str) -> None:
    from veritas import services

    deadline = time.monotonic() + 300
    while (client.get(f"/training/runs/{run_id}").json().get("current_step") or "") != step:
        assert time.monotonic() < deadline, f"{step} never started"
        time.sleep(0.1)
    if step == "model_training":  # mid-epoch, not before the child has started
        while not client.get(f"/training/runs/{run_id}").json().get("progress"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert services.kill_service(stack, victim) is not None  # the supervisor restarts it


@pytest.mark.parametrize(
    ("victim", "step"),
    [("training-steps", "model_training"), ("training-orchestrator", "model_validation")],
)
def test_a_worker_killed_mid_saga_leaves_one_artifact_one_version_one_submission(
    stack: Settings, victim: str, step: str
) -> None:
    client = t.api(stack)
    name = t.model(client, f"kill-{victim[9:13]}")
    run_id = t.start(client, name, hyperparameters={"epochs": 25})
    _kill_when(stack, client, run_id, victim, step)
    run = t.wait_run(client, run_id)
    assert run["status"] == "completed", run["error"]
    events = t.stream(stack, run_id)
    kinds = t.types(events)
    # Each step ran once (as seen by the saga), no retry, no compensation, every epoch once.
    assert kinds.count("StepDispatched") == kinds.count("StepSucceeded") == 4
    assert "StepFailed" not in kinds and "CompensationStarted" not in kinds
    assert [e.payload["epoch"] for e in events if e.type == "TrainingProgressed"] == list(
        range(1, 26)
    )
    versions = client.get(f"/models/{name}").json()["versions"]
    assert [v["version"] for v in versions] == ["1.0.0"]
    subs = client.get("/governance/submissions", params={"model_name": name}).json()["items"]
    assert len(subs) == 1
    trained = next(
        e for e in events if e.type == "StepSucceeded" and e.payload["step"] == "model_training"
    )
    assert versions[0]["version"] == run["version"]
    sha = trained.payload["result"]["artifact_sha256"]
    assert client.get(f"/models/{name}/versions/1.0.0").json()["artifact"]["sha256"] == sha


def test_training_metrics_count_runs_steps_retries_and_compensations(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "metrics")
    faults = {
        "noop": True,
        "steps": {
            "model_training": {"transient_failures": 1},
            "model_registration": {"permanent": "refused"},
        },
    }
    run = t.wait_run(client, t.start(client, name, faults=faults))
    assert run["status"] == "failed"
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (x.name, frozenset(x.labels.items())): x.value
        for fam in text_string_to_metric_families(client.get("/metrics").text)
        for x in fam.samples
        if x.name.startswith("veritas_training_")
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    assert value("veritas_training_runs", status="failed") >= 1
    assert value("veritas_training_retries_total", step="model_training", kind="run") >= 1
    assert (
        value("veritas_training_compensations_total", step="model_training", status="succeeded")
        >= 1
    )
    assert (
        value(
            "veritas_training_step_attempts_total",
            step="data_preparation",
            kind="run",
            status="succeeded",
        )
        >= 1
    )

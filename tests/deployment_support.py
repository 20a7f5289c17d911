"""Helpers of the serving e2e tests (not a test module): register a trained artifact as a signed
version through the API, take it through governance, and read what the deployment shows."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.settings import Settings
from infra import keys
from ml import numpy_forward, signing
from ml.store import ArtifactStore
from tests import training_support as t


def register_version(
    client: httpx.Client,
    s: Settings,
    name: str,
    artifact_dir: Path,
    version: str,
    foreign_key: Ed25519PrivateKey | None = None,
) -> dict[str, Any]:
    """Store the artifact and its manifest, sign them (with the stack's key, or `foreign_key`
    under the stack's key id: a forged signature) and register the version."""
    store = ArtifactStore(s.artifacts_dir)
    sha = store.put_file(artifact_dir / "model.safetensors")
    manifest_bytes = (artifact_dir / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    message = signing.artifact_message(sha, manifest)
    key_id, signature = keys.load(s).sign(message)
    if foreign_key is not None:
        signature = signing.sign(foreign_key, message)
    artifact = {
        "uri": f"veritas-artifacts://sha256/{sha}",
        "sha256": sha,
        "signature": signature,
        "public_key_id": key_id,
        "manifest_sha256": store.put_bytes(manifest_bytes),
    }
    body = t.command(
        client,
        "RegisterModelVersion",
        {"model_name": name, "version": version, "artifact": artifact},
    )
    assert body["status"] == "accepted", body
    return artifact


def approve(s: Settings, name: str, version: str, stage: str = "production") -> None:
    """Submission by the author, then governance's approvals (production: two distinct)."""
    author = t.api(s, "data_scientist", subject="dana")
    body = t.command(
        author,
        "SubmitForApproval",
        {"model_name": name, "version": version, "target_stage": stage, "justification": "ok"},
    )
    assert body["status"] == "accepted", body
    sid = str(body["events"][0]["aggregate_id"])
    for who in ("ann", "bob")[: 2 if stage == "production" else 1]:
        approver = t.api(s, "approver", subject=who)
        got = t.command(approver, "ApproveSubmission", {"submission_id": sid})
        assert got["status"] == "accepted", got


def deployment(client: httpx.Client, name: str) -> dict[str, Any] | None:
    r = client.get(f"/deployments/{name}")
    return r.json() if r.status_code == 200 else None


def wait_deployment(
    client: httpx.Client, name: str, check: Any, timeout_s: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    d = None
    while time.monotonic() < deadline:
        d = deployment(client, name)
        if d is not None and check(d):
            return d
        time.sleep(0.3)
    raise AssertionError(f"deployment of {name} not as expected after {timeout_s} s: {d}")


def expected_labels(artifact_dir: Path, rows: list[list[float]]) -> list[str]:
    """The artifact's own predictions, computed outside Serve (numpy only)."""
    manifest = json.loads((artifact_dir / "manifest.json").read_text())
    state = numpy_forward.load_state(artifact_dir / "model.safetensors")
    probs = numpy_forward.predict_proba(state, np.asarray(rows, dtype=np.float32))
    classes = manifest["classes"]
    return [str(classes[i]) for i in probs.argmax(axis=1)]

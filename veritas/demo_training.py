"""The demo's training part: a real training saga (torch on scikit-learn's digits) to a signed
version that goes through governance to production, and a saga that fails a quality gate and
shows its compensation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

Post = Callable[[httpx.Client, str, str, dict[str, Any]], dict[str, Any]]


def _wait(api: httpx.Client, token: str, run_id: str, timeout_s: float = 900) -> dict[str, Any]:
    hdr = {"authorization": f"Bearer {token}"}
    deadline, shown = time.monotonic() + timeout_s, ""
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = api.get(f"/training/runs/{run_id}", headers=hdr).json()
        step = run.get("current_step") or ""
        if step and step != shown:
            print(f"   ... {step}")
            shown = step
        if run.get("status") in ("completed", "failed", "cancelled"):
            return run
        time.sleep(0.5)
    return run


def _train(api: httpx.Client, post: Post, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    started = post(api, token, "StartTraining", payload)
    if started.get("status") != "accepted":
        return {"status": "rejected"}
    return _wait(api, token, str(started["events"][0]["aggregate_id"]))


def _promote(
    api: httpx.Client, post: Post, tok: dict[str, str], name: str, version: str, staging_sub: str
) -> bool:
    post(
        api,
        tok["bob"],
        "ApproveSubmission",
        {"submission_id": staging_sub, "comments": "gates passed"},
    )
    post(
        api,
        tok["olga"],
        "TransitionStage",
        {"model_name": name, "version": version, "stage": "staging"},
    )
    sub = post(
        api,
        tok["olga"],
        "SubmitForApproval",
        {
            "model_name": name,
            "version": version,
            "target_stage": "production",
            "justification": "staging looks good",
        },
    )
    sub_id = next(e["aggregate_id"] for e in sub["events"])
    post(api, tok["bob"], "ApproveSubmission", {"submission_id": sub_id})
    post(api, tok["carol"], "ApproveSubmission", {"submission_id": sub_id})
    done = post(
        api,
        tok["olga"],
        "TransitionStage",
        {"model_name": name, "version": version, "stage": "production"},
    )
    return done.get("status") == "accepted"


def run(api: httpx.Client, post: Post, tok: dict[str, str]) -> tuple[bool, str, str]:
    hdr = {"authorization": f"Bearer {tok['alice']}"}
    name = f"digits-{uuid.uuid4().hex[:6]}"
    post(
        api,
        tok["alice"],
        "RegisterModel",
        {
            "name": name,
            "description": "Handwritten digit classifier",
            "intended_use": "Demos",
            "limitations": "8x8 greyscale digits only",
        },
    )
    print(
        "\n== 7. Training saga: prepare sklearn:digits, train a torch MLP, validate, sign, register"
    )
    run_ = _train(api, post, tok["alice"], {"model_name": name, "dataset_uri": "sklearn:digits"})
    ok = run_.get("status") == "completed"
    version = run_.get("version") or ""
    last = ([p for p in run_.get("progress", []) if "epoch" in p] or [{}])[-1]
    print(
        f"   {run_.get('status')}: version {version}; epoch {last.get('epoch')} loss {last.get('loss')}"
    )
    if ok:
        v = api.get(f"/models/{name}/versions/{version}", headers=hdr).json()
        art = v["artifact"]
        print(
            f"   holdout accuracy {v['metrics'].get('accuracy', 0):.3f}; sha256 {art['sha256'][:16]}...; "
            f"signed by key {art.get('public_key_id')}; semver rule {v['lineage']['training_config']['semver']['rule']}"
        )
        gates = ", ".join(
            f"{g['gate']}={'pass' if g['passed'] else 'FAIL'}" for g in run_["gate_results"]
        )
        print(f"   gates: {gates}")
        ok &= _promote(api, post, tok, name, version, str(run_["submission_id"]))
        model = api.get(f"/models/{name}", headers=hdr).json()
        print(f"   through governance: production_version={model['production_version']}")
        ok &= model["production_version"] == version
    print("\n== 8. A saga that fails its quality gate compensates, newest step first")
    failed = _train(
        api,
        post,
        tok["alice"],
        {
            "model_name": name,
            "dataset_uri": "sklearn:digits",
            "hyperparameters": {"epochs": 2},
            "gates": {"min_accuracy": 0.9999},
        },
    )
    undone = [c["step"] for c in failed.get("compensations", [])]
    print(
        f"   {failed.get('status')} at {failed.get('failed_step')}: {str(failed.get('error'))[:120]}"
    )
    print(f"   compensated: {undone}")
    ok &= failed.get("status") == "failed" and undone == ["model_training", "data_preparation"]
    return bool(ok), name, version

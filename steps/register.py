"""model_registration: the version number by seed 004's rule, the Ed25519 signature over the
digest and manifest, the model card, the reference profile and the artifact kept together in the
store, RegisterModelVersion with full lineage, then SubmitForApproval for staging. Compensation
archives the version, with the reason.

Idempotent across attempts and crashes: the two commands' ids come from the saga alone, so a
re-run finds the version an earlier attempt registered (its stored result) instead of taking the
next number, and the handler answers a repeated submission with its stored result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domain.governance import submission_id_for
from ml import semver, signing
from ml.card import CardFacts, render_card
from steps.context import PermanentFailure, StepContext, TransientFailure


def _ids(saga_id: str) -> tuple[str, str, str]:
    return f"train-{saga_id}-register", f"train-{saga_id}-submit", f"train-{saga_id}-archive"


def _manifest(ctx: StepContext, sha: str) -> dict[str, Any]:
    with ctx.artifacts.open(sha) as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def _model(ctx: StepContext, name: str) -> dict[str, Any]:
    with ctx.read_connection() as conn:
        row = conn.execute(
            "SELECT description, intended_use, limitations, owner, production_version"
            " FROM rm_models WHERE name = %s",
            (name,),
        ).fetchone()
        versions = conn.execute(
            "SELECT version, artifact FROM rm_model_versions WHERE model_name = %s"
            " ORDER BY major, minor, patch",
            (name,),
        ).fetchall()
    if row is None:
        raise PermanentFailure(f"model '{name}' is not registered")
    keys = ("description", "intended_use", "limitations", "owner", "production_version")
    return {
        **dict(zip(keys, row, strict=True)),
        "versions": [(str(v), dict(a)) for v, a in versions],
    }


def decide(
    ctx: StepContext, model: dict[str, Any], manifest: dict[str, Any], major: bool
) -> semver.VersionDecision:
    """The parent is the production version, else the latest one; its manifest (kept in the store
    when this saga registered it) is what the rule compares with."""
    versions = dict(model["versions"])
    parent = model["production_version"] or (model["versions"][-1][0] if versions else None)
    parent_sha = versions.get(parent, {}).get("manifest_sha256") if parent else None
    parent_manifest = (
        _manifest(ctx, parent_sha) if parent_sha and ctx.artifacts.has(parent_sha) else None
    )
    if parent_manifest is None:
        parent = None  # nothing to compare with: the rule starts from the first version
    return semver.next_version(parent_manifest, parent, manifest, major, set(versions))


def _already_registered(ctx: StepContext, command_id: str) -> str | None:
    found = ctx.store.find_results([command_id]).get(command_id)
    if found is None or found.status != "accepted":
        return None
    (ref,) = [e for e in found.events if e.version == 1]
    return str(ctx.store.load(ref.aggregate_id)[0].payload["version"])


def _store_bundle(ctx: StepContext, snapshot: Path, card: str) -> dict[str, str]:
    return {
        "card_sha256": ctx.artifacts.put_bytes(card.encode()),
        "profile_sha256": ctx.artifacts.put_file(snapshot / "profile.json"),
        "reference_sha256": ctx.artifacts.put_file(snapshot / "reference.safetensors"),
    }


def _card(
    name: str, version: str, model: dict[str, Any], manifest: dict[str, Any], inputs: dict[str, Any]
) -> str:
    facts = CardFacts(
        name=name,
        version=version,
        developer=model["owner"],
        owner=model["owner"],
        description=model["description"],
        intended_use=model["intended_use"],
        limitations=model["limitations"],
        dataset_name=str(inputs["dataset"].get("dataset_uri")),
    )
    report = {k: inputs["validation"].get(k) for k in ("gates", "metrics")}
    return render_card(facts, manifest, report)


def _lineage(
    inputs: dict[str, Any], decision: semver.VersionDecision, run_id: str
) -> dict[str, Any]:
    data, trained = inputs["dataset"], inputs["training"]
    ref = data.get("dataset_ref")
    return {
        "parent_version": decision.inputs.get("parent_version"),
        "dataset": {k: ref[k] for k in ("name", "version", "checksum")} if ref else None,
        "training_config": {
            "run_id": run_id,
            "dataset_uri": data.get("dataset_uri"),
            "dataset_sha256": data.get("dataset_sha256"),
            "hyperparameters": inputs["hyperparameters"],
            "trigger": inputs.get("trigger"),
            "semver": {"bump": decision.bump, "rule": decision.rule, "inputs": decision.inputs},
        },
        "environment": trained.get("environment") or {},
        "code_revision": trained.get("code_revision"),
    }


def _metrics(inputs: dict[str, Any]) -> dict[str, float]:
    m = inputs["validation"].get("metrics") or {}
    keys = ("accuracy", "latency_p95_ms", "size_bytes", "peak_memory_bytes")
    return {k: float(m[k]) for k in keys if isinstance(m.get(k), int | float)}


def run(saga_id: str, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    name, trained = inputs["model_name"], inputs["training"]
    register_id, submit_id, _ = _ids(saga_id)
    manifest = _manifest(ctx, trained["manifest_sha256"])
    version = _already_registered(ctx, register_id)
    decision = None
    if version is None:
        model = _model(ctx, name)
        decision = decide(ctx, model, manifest, bool(inputs.get("declared_major")))
        version = decision.version
        _register(ctx, inputs, model, manifest, decision, register_id)
    submitted = ctx.wait_result(_submit(ctx, name, version, submit_id, inputs))
    if submitted.status != "accepted":
        raise PermanentFailure(
            f"the submission was refused: {submitted.reason_code}: {submitted.message}"
        )
    return {
        "version": version,
        "bump": decision.bump if decision else None,
        "rule": decision.rule if decision else None,
        "artifact_sha256": trained["artifact_sha256"],
        "submission_id": str(submission_id_for(submit_id)),
    }


def _register(
    ctx: StepContext,
    inputs: dict[str, Any],
    model: dict[str, Any],
    manifest: dict[str, Any],
    decision: semver.VersionDecision,
    command_id: str,
) -> None:
    name, trained = inputs["model_name"], inputs["training"]
    key_id, signature = ctx.keyring.sign(
        signing.artifact_message(trained["artifact_sha256"], manifest)
    )
    card = _card(name, decision.version, model, manifest, inputs)
    artifact = {
        "uri": f"veritas-artifacts://sha256/{trained['artifact_sha256']}",
        "sha256": trained["artifact_sha256"],
        "signature": signature,
        "public_key_id": key_id,
        "manifest_sha256": trained["manifest_sha256"],
        **_store_bundle(ctx, Path(inputs["snapshot"]), card),
    }
    payload = {
        "model_name": name,
        "version": decision.version,
        "artifact": artifact,
        "lineage": _lineage(inputs, decision, inputs["run_id"]),
        "metrics": _metrics(inputs),
    }
    ctx.send("RegisterModelVersion", payload, name, command_id)
    result = ctx.wait_result(command_id)
    if result.status == "rejected":
        if result.reason_code == "conflict":  # the number was taken meanwhile: decide again
            raise TransientFailure(f"version {decision.version} was taken: {result.message}")
        raise PermanentFailure(
            f"the registry rejected version {decision.version}: {result.reason_code}"
            f"{'/' + result.sub_code if result.sub_code else ''}: {result.message}"
        )


def _submit(
    ctx: StepContext, name: str, version: str, command_id: str, inputs: dict[str, Any]
) -> str:
    acc = (inputs["validation"].get("metrics") or {}).get("accuracy")
    payload = {
        "model_name": name,
        "version": version,
        "target_stage": "staging",
        "justification": f"trained by run {inputs['run_id']}; holdout accuracy {acc}",
    }
    ctx.send("SubmitForApproval", payload, name, command_id)
    return command_id


def compensate(saga_id: str, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    name, version = inputs.get("model_name"), inputs.get("version")
    if not version:
        return {"archived": None}
    _, _, archive_id = _ids(saga_id)
    payload = {
        "model_name": name,
        "version": version,
        "reason": str(inputs.get("reason", ""))[:1000],
    }
    ctx.send("ArchiveModelVersion", payload, str(name), archive_id)
    result = ctx.wait_result(archive_id)
    if result.status == "accepted" or result.reason_code == "not_found":
        return {"archived": version if result.status == "accepted" else None}
    if result.sub_code == "archived_version":
        return {"archived": version, "already": True}
    raise PermanentFailure(
        f"archiving {name} {version} refused: {result.reason_code}: {result.message}"
    )

"""The serving controller's translations (no Ray, no Kafka): the plan's targets into the runtime's
``user_config`` (each version's artifact path in the store, its manifest, the public key of the
key id that signed it), and the replicas' reports into serving commands."""

from __future__ import annotations

import json
from typing import Any

from ml.store import ArtifactStore
from sagas.model import OutgoingCommand
from sagas.serving_plan import Target

LOAD_REASONS = frozenset({"sha256_mismatch", "bad_signature", "not_approved", "unreadable"})


def version_spec(
    target: Target, store: ArtifactStore, public_keys: dict[str, str], active_key: str
) -> dict[str, Any]:
    a = target.info.artifact
    manifest = None
    if a.get("manifest_sha256") and store.has(a["manifest_sha256"]):
        with store.open(a["manifest_sha256"]) as f:
            manifest = json.loads(f.read())
    key_id = a.get("public_key_id") or active_key
    return {
        "version": target.info.version,
        "artifact": str(store.path_of(a["sha256"])),
        "sha256": a["sha256"],
        "signature": a["signature"],
        # An unknown key id gets the active key: the signature then fails as bad_signature.
        "public_key": public_keys.get(key_id) or public_keys[active_key],
        "approved_for": sorted(target.info.approved_for),
        "stage": target.stage,
        "manifest": manifest,
    }


def user_config(
    targets: dict[str, dict[str, Any]],
    store: ArtifactStore,
    public_keys: dict[str, str],
    active_key: str,
    batch: dict[str, Any],
) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for name, t in targets.items():
        entry: dict[str, Any] = {
            slot: version_spec(t[slot], store, public_keys, active_key) if t[slot] else None
            for slot in ("production", "canary")
        }
        entry["canary_share"] = t["canary_share"]
        if t["canary_faults"]:
            entry["canary_faults"] = t["canary_faults"]
        models[name] = entry
    return {"models": models, "trusted_key_ids": None, "batch": batch}


def report_command(report: dict[str, Any], generation: str) -> tuple[str, OutgoingCommand] | None:
    """A replica's report as a serving command, with the cause its id is derived from: every
    replica reports the same change of one deployment, and those repeats share the id."""
    model, slot, version = report.get("model_name"), report.get("slot"), report.get("version")
    if not isinstance(model, str) or slot not in ("production", "canary"):
        return None
    cause = f"report/{generation}/{report.get('kind')}/{model}/{slot}/{version}"
    if report.get("kind") == "load_refused" and report.get("reason") in LOAD_REASONS:
        payload = {
            "model_name": model,
            "version": version,
            "slot": slot,
            "reason": report["reason"],
            "detail": str(report.get("detail") or "")[:1000],
            "still_serving": report.get("still_serving"),
        }
        return cause, OutgoingCommand("RecordLoadRefused", payload, model)
    if report.get("kind") == "serving":
        payload = {
            "model_name": model,
            "slot": slot,
            "version": version,
            "previous_version": report.get("previous_version"),
        }
        return cause, OutgoingCommand("RecordServedVersion", payload, model)
    return None


def scale_decision(lag: int, replicas: int, threshold: int, max_replicas: int) -> int | None:
    """The replica count to scale out to, or None (lag under the threshold, or at the bound)."""
    if lag <= threshold or replicas >= max_replicas:
        return None
    return replicas + 1

"""Projections of registry events into rm_models, rm_model_versions, rm_stage_history and
rm_datasets: pure functions from an event to row operations (projections.ops)."""

from __future__ import annotations

from projections.ops import Event, Insert, Op, Projection, Update


def model_registered(e: Event) -> list[Op]:
    p = e.payload
    row = {
        "name": p["name"],
        "aggregate_id": e.aggregate_id,
        "description": p["description"],
        "intended_use": p["intended_use"],
        "limitations": p["limitations"],
        "owner": p["owner"],
        "tags": p["tags"],
        "production_version": None,
        "created_at": e.occurred_at,
        "updated_at": e.occurred_at,
    }
    return [Insert("rm_models", row)]


def model_metadata_updated(e: Event) -> list[Op]:
    p = e.payload
    keep = {c: p.get(c) for c in ("description", "intended_use", "limitations")}
    append = {"tags": p["tags"]} if p.get("tags") is not None else {}
    return [
        Update(
            "rm_models",
            "aggregate_id",
            e.aggregate_id,
            set={"updated_at": e.occurred_at},
            keep=keep,
            append=append,
        )
    ]


def dataset_registered(e: Event) -> list[Op]:
    p = e.payload
    cols = ("name", "version", "uri", "checksum", "description", "registered_by")
    return [Insert("rm_datasets", {**{c: p[c] for c in cols}, "created_at": e.occurred_at})]


def model_version_registered(e: Event) -> list[Op]:
    p = e.payload
    major, minor, patch = (int(x) for x in p["version"].split("."))
    row = {
        "model_name": p["model_name"],
        "version": p["version"],
        "aggregate_id": e.aggregate_id,
        "major": major,
        "minor": minor,
        "patch": patch,
        "stage": "development",
        "artifact": p["artifact"],
        "lineage": p["lineage"],
        "metrics": p["metrics"],
        "registered_by": p["registered_by"],
        "approvals": [],
        "created_at": e.occurred_at,
        "updated_at": e.occurred_at,
    }
    return [Insert("rm_model_versions", row)]


def version_approved(e: Event) -> list[Op]:
    entry = {**e.payload, "approved_at": e.occurred_at.isoformat()}
    return [
        Update(
            "rm_model_versions",
            "aggregate_id",
            e.aggregate_id,
            set={"updated_at": e.occurred_at},
            append={"approvals": [entry]},
        )
    ]


def stage_transitioned(e: Event) -> list[Op]:
    p = e.payload
    history = {
        "aggregate_id": e.aggregate_id,
        "event_version": e.version,
        "model_name": p["model_name"],
        "version": p["version"],
        "from_stage": p["from_stage"],
        "to_stage": p["to_stage"],
        "reason": p["reason"],
        "actor": e.actor,
        "occurred_at": e.occurred_at,
    }
    return [
        Update(
            "rm_model_versions",
            "aggregate_id",
            e.aggregate_id,
            set={"stage": p["to_stage"], "updated_at": e.occurred_at},
        ),
        Insert("rm_stage_history", history),
    ]


def production_changed(e: Event) -> list[Op]:
    version = e.payload.get("version") or e.payload.get("to_version")
    return [
        Update(
            "rm_models",
            "aggregate_id",
            e.aggregate_id,
            set={"production_version": version, "updated_at": e.occurred_at},
        )
    ]


PROJECTIONS: dict[str, Projection] = {
    "ModelRegistered": model_registered,
    "ModelMetadataUpdated": model_metadata_updated,
    "DatasetRegistered": dataset_registered,
    "ModelVersionRegistered": model_version_registered,
    "VersionApproved": version_approved,
    "StageTransitioned": stage_transitioned,
    "ProductionVersionChanged": production_changed,
    "ProductionRolledBack": production_changed,
}

"""Projections of registry events into rm_models, rm_model_versions, rm_stage_history and
rm_datasets. Each function applies one event; the projector runs it inside its transaction."""

from __future__ import annotations

from collections.abc import Callable

from psycopg import Cursor
from psycopg.types.json import Jsonb

from events.envelope import EventEnvelope

Projection = Callable[[Cursor, EventEnvelope], None]


def model_registered(cur: Cursor, env: EventEnvelope) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO rm_models (name, aggregate_id, description, intended_use, limitations, owner, tags,"
        " created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (
            p["name"],
            env.aggregate_id,
            p["description"],
            p["intended_use"],
            p["limitations"],
            p["owner"],
            Jsonb(p["tags"]),
            env.occurred_at,
            env.occurred_at,
        ),
    )


def model_metadata_updated(cur: Cursor, env: EventEnvelope) -> None:
    p = env.payload
    cur.execute(
        "UPDATE rm_models SET description = coalesce(%s, description),"
        " intended_use = coalesce(%s, intended_use), limitations = coalesce(%s, limitations),"
        " tags = tags || coalesce(%s, '{}'::jsonb), updated_at = %s WHERE aggregate_id = %s",
        (
            p.get("description"),
            p.get("intended_use"),
            p.get("limitations"),
            Jsonb(p["tags"]) if p.get("tags") is not None else None,
            env.occurred_at,
            env.aggregate_id,
        ),
    )


def dataset_registered(cur: Cursor, env: EventEnvelope) -> None:
    p = env.payload
    cur.execute(
        "INSERT INTO rm_datasets (name, version, uri, checksum, description, registered_by, created_at)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s)",
        (
            p["name"],
            p["version"],
            p["uri"],
            p["checksum"],
            p["description"],
            p["registered_by"],
            env.occurred_at,
        ),
    )


def model_version_registered(cur: Cursor, env: EventEnvelope) -> None:
    p = env.payload
    major, minor, patch = (int(x) for x in p["version"].split("."))
    cur.execute(
        "INSERT INTO rm_model_versions (model_name, version, aggregate_id, major, minor, patch, stage,"
        " artifact, lineage, metrics, registered_by, created_at, updated_at)"
        " VALUES (%s,%s,%s,%s,%s,%s,'development',%s,%s,%s,%s,%s,%s)",
        (
            p["model_name"],
            p["version"],
            env.aggregate_id,
            major,
            minor,
            patch,
            Jsonb(p["artifact"]),
            Jsonb(p["lineage"]),
            Jsonb(p["metrics"]),
            p["registered_by"],
            env.occurred_at,
            env.occurred_at,
        ),
    )


def version_approved(cur: Cursor, env: EventEnvelope) -> None:
    p = env.payload
    cur.execute(
        "UPDATE rm_model_versions SET approvals = approvals || %s, updated_at = %s WHERE aggregate_id = %s",
        (
            Jsonb([{**p, "approved_at": env.occurred_at.isoformat()}]),
            env.occurred_at,
            env.aggregate_id,
        ),
    )


def stage_transitioned(cur: Cursor, env: EventEnvelope) -> None:
    p = env.payload
    cur.execute(
        "UPDATE rm_model_versions SET stage = %s, updated_at = %s WHERE aggregate_id = %s",
        (p["to_stage"], env.occurred_at, env.aggregate_id),
    )
    cur.execute(
        "INSERT INTO rm_stage_history (aggregate_id, event_version, model_name, version, from_stage,"
        " to_stage, reason, actor, occurred_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (
            env.aggregate_id,
            env.version,
            p["model_name"],
            p["version"],
            p["from_stage"],
            p["to_stage"],
            p["reason"],
            env.actor,
            env.occurred_at,
        ),
    )


def production_changed(cur: Cursor, env: EventEnvelope) -> None:
    version = env.payload.get("version") or env.payload.get("to_version")
    cur.execute(
        "UPDATE rm_models SET production_version = %s, updated_at = %s WHERE aggregate_id = %s",
        (version, env.occurred_at, env.aggregate_id),
    )


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

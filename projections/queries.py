"""Plain read functions over the read-model tables. Never loads an aggregate."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Row = dict[str, Any]


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None


async def fetch_all(
    conn: AsyncConnection, query: str, params: tuple[Any, ...] | list[Any] | dict[str, Any] = ()
) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.encode(), params)
        return await cur.fetchall()


async def _one(conn: AsyncConnection, query: str, params: tuple[Any, ...] = ()) -> Row | None:
    rows = await fetch_all(conn, query, params)
    return rows[0] if rows else None


# Derived per model at read time, so that no projection writes across aggregates (a rebuild applies
# partitions in any interleaving, and must reach the same read model).
MODEL_SELECT = (
    "SELECT m.*,"
    " (SELECT count(*) FROM rm_model_versions v WHERE v.model_name = m.name)::int AS version_count,"
    " (SELECT h.version FROM rm_stage_history h JOIN rm_model_versions v"
    "   ON v.aggregate_id = h.aggregate_id AND v.stage = 'staging'"
    "   WHERE h.model_name = m.name AND h.to_stage = 'staging'"
    "   ORDER BY h.occurred_at DESC, h.version DESC LIMIT 1) AS staging_version"
    " FROM rm_models m"
)


async def list_models(
    conn: AsyncConnection,
    *,
    owner: str | None,
    stage: str | None,
    q: str | None,
    limit: int,
    after: str | None,
) -> list[Row]:
    where, params = ["TRUE"], list[Any]()
    if owner:
        where.append("m.owner = %s")
        params.append(owner)
    if q:
        where.append("(m.name ILIKE %s OR m.description ILIKE %s)")
        params += [f"%{q}%", f"%{q}%"]
    if stage:
        where.append(
            "EXISTS (SELECT 1 FROM rm_model_versions v WHERE v.model_name = m.name AND v.stage = %s)"
        )
        params.append(stage)
    if after:
        where.append("m.name > %s")
        params.append(after)
    params.append(limit)
    return await fetch_all(
        conn, f"{MODEL_SELECT} WHERE {' AND '.join(where)} ORDER BY m.name LIMIT %s", params
    )


async def get_model_json(conn: AsyncConnection, name: str) -> bytes | None:
    """The model with its versions, rendered by Postgres as the API's ModelDetail JSON: one round
    trip, and no Python row, jsonb decoding, validation or encoding on the hot read."""
    async with conn.cursor() as cur:
        await cur.execute(
            b"SELECT (to_jsonb(x) - 'aggregate_id' || jsonb_build_object('as_of', NULL,"
            b" 'versions', coalesce((SELECT jsonb_agg(jsonb_build_object('version', v.version,"
            b" 'stage', v.stage, 'metrics', v.metrics, 'approvals', v.approvals,"
            b" 'created_at', v.created_at) ORDER BY v.major, v.minor, v.patch)"
            b" FROM rm_model_versions v WHERE v.model_name = x.name), '[]')))::text"
            + f" FROM ({MODEL_SELECT} WHERE m.name = %s) x".encode(),
            (name,),
        )
        row = await cur.fetchone()
    return None if row is None else str(row[0]).encode()


async def list_versions(conn: AsyncConnection, name: str) -> list[Row]:
    return await fetch_all(
        conn,
        "SELECT * FROM rm_model_versions WHERE model_name = %s ORDER BY major, minor, patch",
        (name,),
    )


async def get_version(conn: AsyncConnection, name: str, version: str) -> Row | None:
    return await _one(
        conn,
        "SELECT * FROM rm_model_versions WHERE model_name = %s AND version = %s",
        (name, version),
    )


async def stage_history(conn: AsyncConnection, name: str, version: str) -> list[Row]:
    return await fetch_all(
        conn,
        "SELECT * FROM rm_stage_history WHERE model_name = %s AND version = %s ORDER BY occurred_at, event_version",
        (name, version),
    )


async def list_datasets(
    conn: AsyncConnection, *, name: str | None, limit: int, after: str | None
) -> list[Row]:
    where, params = ["TRUE"], list[Any]()
    if name:
        where.append("name = %s")
        params.append(name)
    if after:
        where.append("(name || '@' || version) > %s")
        params.append(after)
    params.append(limit)
    return await fetch_all(
        conn,
        f"SELECT * FROM rm_datasets WHERE {' AND '.join(where)} ORDER BY name || '@' || version LIMIT %s",
        params,
    )


async def list_submissions(
    conn: AsyncConnection,
    *,
    status: str | None,
    model_name: str | None,
    awaiting: str | None,
    limit: int,
    after: str | None,
) -> list[Row]:
    where, params = ["TRUE"], list[Any]()
    if status:
        where.append("status = %s")
        params.append(status)
    if model_name:
        where.append("model_name = %s")
        params.append(model_name)
    if awaiting:  # the approval queue: pending, not the approver's own, not yet approved by them
        where.append("status = 'pending' AND submitted_by <> %s AND NOT approvers @> %s")
        params += [awaiting, Jsonb([{"approver": awaiting}])]
    if after:
        where.append("submission_id::text > %s")
        params.append(after)
    params.append(limit)
    return await fetch_all(
        conn,
        f"SELECT * FROM rm_submissions WHERE {' AND '.join(where)} ORDER BY submission_id::text LIMIT %s",
        params,
    )


async def get_command_status(conn: AsyncConnection, command_id: str) -> Row | None:
    return await _one(conn, "SELECT * FROM rm_command_status WHERE command_id = %s", (command_id,))


async def events_projected(conn: AsyncConnection, refs: list[tuple[str, int]]) -> bool:
    if not refs:
        return True
    rows = await fetch_all(
        conn,
        "SELECT count(*) AS n FROM rm_audit_log a JOIN unnest(%s::uuid[], %s::int[]) AS r(id, v)"
        " ON a.aggregate_id = r.id AND a.version = r.v",
        ([r[0] for r in refs], [r[1] for r in refs]),
    )
    return int(rows[0]["n"]) == len(refs)


async def audit_trail(conn: AsyncConnection, aggregate_type: str, aggregate_id: str) -> list[Row]:
    return await fetch_all(
        conn,
        "SELECT envelope FROM rm_audit_log WHERE aggregate_type = %s AND aggregate_id = %s ORDER BY version",
        (aggregate_type, aggregate_id),
    )


async def model_as_of(conn: AsyncConnection, name: str, as_of: datetime) -> Row | None:
    """The model as it stood at `as_of`: each version's stage then, and the approvals given by then."""
    model = await _one(
        conn, "SELECT * FROM rm_models WHERE name = %s AND created_at <= %s", (name, as_of)
    )
    if model is None:
        return None
    versions = await fetch_all(
        conn,
        "SELECT v.version, v.created_at, v.metrics,"
        " coalesce((SELECT h.to_stage FROM rm_stage_history h WHERE h.aggregate_id = v.aggregate_id"
        "   AND h.occurred_at <= %(t)s ORDER BY h.occurred_at DESC, h.event_version DESC LIMIT 1),"
        "   'development') AS stage,"
        " coalesce((SELECT jsonb_agg(a) FROM jsonb_array_elements(v.approvals) a"
        "   WHERE (a->>'approved_at')::timestamptz <= %(t)s), '[]'::jsonb) AS approvals,"
        " (SELECT max(h.occurred_at) FROM rm_stage_history h WHERE h.aggregate_id = v.aggregate_id"
        "   AND h.to_stage = 'staging' AND h.occurred_at <= %(t)s) AS staged_at"
        " FROM rm_model_versions v WHERE v.model_name = %(n)s AND v.created_at <= %(t)s"
        " ORDER BY v.major, v.minor, v.patch",
        {"t": as_of, "n": name},
    )
    production = [v["version"] for v in versions if v["stage"] == "production"]
    staging = sorted((v for v in versions if v["stage"] == "staging"), key=lambda v: v["staged_at"])
    return {
        **model,
        "production_version": production[-1] if production else None,
        "staging_version": staging[-1]["version"] if staging else None,
        "version_count": len(versions),
        "versions": versions,
        "as_of": as_of,
    }

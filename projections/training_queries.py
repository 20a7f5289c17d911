"""Plain read functions over the training runs' read models."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from projections.queries import fetch_all as _all

Row = dict[str, Any]
RUN_COLS = (
    "run_id::text AS run_id, model_name, dataset_uri, status, requested_by, hyperparameters,"
    " gates, trigger, current_step, gate_results, compensations, progress, retries, cause,"
    " failed_step, error, version, artifact_sha256, submission_id, created_at, updated_at"
)


async def list_runs(
    conn: AsyncConnection, *, model: str | None, status: str | None, limit: int, after: str | None
) -> list[Row]:
    """Newest first; the cursor is the last row's (created_at, run_id)."""
    where, params = ["true"], []
    if model is not None:
        where.append("model_name = %s")
        params.append(model)
    if status is not None:
        where.append("status = %s")
        params.append(status)
    if after is not None:
        at, _, rid = after.partition("|")
        where.append("(created_at, run_id::text) < (%s::timestamptz, %s)")
        params += [at, rid]
    query = (
        f"SELECT {RUN_COLS} FROM rm_training_runs WHERE {' AND '.join(where)}"
        " ORDER BY created_at DESC, run_id::text DESC LIMIT %s"
    )
    return await _all(conn, query, (*params, limit))


async def get_run(conn: AsyncConnection, run_id: str) -> Row | None:
    rows = await _all(
        conn, f"SELECT {RUN_COLS} FROM rm_training_runs WHERE run_id::text = %s", (run_id,)
    )
    if not rows:
        return None
    steps = await _all(
        conn,
        "SELECT step, kind, attempt, status, dispatched_at, deadline_at, finished_at, duration_s,"
        " result, error FROM rm_training_steps WHERE run_id::text = %s"
        " ORDER BY dispatched_at, kind, attempt",
        (run_id,),
    )
    return {**rows[0], "steps": steps}


async def version_artifact(conn: AsyncConnection, name: str, version: str) -> dict[str, Any] | None:
    rows = await _all(
        conn,
        "SELECT artifact FROM rm_model_versions WHERE model_name = %s AND version = %s",
        (name, version),
    )
    return dict(rows[0]["artifact"]) if rows else None

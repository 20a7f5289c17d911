"""Plain read functions over the monitoring read models."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from projections.queries import fetch_all as _all

Row = dict[str, Any]
COLS = (
    "check_key AS id, model_name, version, window_id, score, severity, drifted, bounds, method,"
    " detected_event_id, report_sha256, retraining, checked_at"
)


async def list_checks(
    conn: AsyncConnection,
    *,
    model: str | None,
    version: str | None,
    severity: str | None,
    limit: int,
    after: str | None,
) -> list[Row]:
    """Newest first; the cursor is the last row's (checked_at, id). severity: warning,
    critical, detected (either) or none."""
    where, params = ["true"], []
    for col, value in (("model_name", model), ("version", version)):
        if value is not None:
            where.append(f"{col} = %s")
            params.append(value)
    if severity == "detected":
        where.append("severity IS NOT NULL")
    elif severity == "none":
        where.append("severity IS NULL")
    elif severity is not None:
        where.append("severity = %s")
        params.append(severity)
    if after is not None:
        at, _, key = after.partition("|")
        where.append("(checked_at, check_key) < (%s::timestamptz, %s)")
        params += [at, key]
    query = (
        f"SELECT {COLS} FROM rm_drift_checks WHERE {' AND '.join(where)}"
        " ORDER BY checked_at DESC, check_key DESC LIMIT %s"
    )
    return await _all(conn, query, (*params, limit))


async def get_check(conn: AsyncConnection, check_id: str) -> Row | None:
    """By the check's id (model/version/window) or by its DriftDetected event id."""
    rows = await _all(
        conn,
        f"SELECT {COLS}, per_feature FROM rm_drift_checks"
        " WHERE check_key = %s OR detected_event_id = %s",
        (check_id, check_id),
    )
    return rows[0] if rows else None

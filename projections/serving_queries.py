"""Plain read functions over the deployments' read models."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from projections.queries import fetch_all as _all

Row = dict[str, Any]
COLS = (
    "model_name, status, production_version, canary_version, rollout_version, from_version,"
    " canary_share, thresholds, faults, measured, decision, last_refusal, started_at, updated_at"
)


async def list_deployments(conn: AsyncConnection) -> list[Row]:
    return await _all(conn, f"SELECT {COLS} FROM rm_deployments ORDER BY model_name", ())


async def get_deployment(conn: AsyncConnection, model: str, history: int = 200) -> Row | None:
    rows = await _all(conn, f"SELECT {COLS} FROM rm_deployments WHERE model_name = %s", (model,))
    if not rows:
        return None
    events = await _all(
        conn,
        "SELECT seq, event_type, version, detail, actor, occurred_at FROM rm_deployment_history"
        " WHERE model_name = %s ORDER BY seq DESC LIMIT %s",
        (model, history),
    )
    return {**rows[0], "history": events[::-1]}

"""Plain read functions over the projector's quarantine (rm_projection_errors)."""

from __future__ import annotations

import base64
from typing import Any

from psycopg import AsyncConnection, Connection

from projections.queries import fetch_all as _all

Row = dict[str, Any]
COLS = (
    "topic, kafka_partition, kafka_offset, reason, error, aggregate_type, aggregate_id, version,"
    " recorded_at, raw"
)


async def list_quarantined(
    conn: AsyncConnection, *, reason: str | None, limit: int, after: str | None
) -> list[Row]:
    """Oldest first, by place; the cursor is the last row's "topic|partition|offset"."""
    where, params = ["true"], []
    if reason is not None:
        where.append("reason = %s")
        params.append(reason)
    if after is not None:
        topic, partition, offset = after.rsplit("|", 2)
        where.append(
            '(topic COLLATE "C", kafka_partition, kafka_offset) > (%s, %s::int, %s::bigint)'
        )
        params += [topic, partition, offset]
    rows = await _all(
        conn,
        f"SELECT {COLS} FROM rm_projection_errors WHERE {' AND '.join(where)}"
        ' ORDER BY topic COLLATE "C", kafka_partition, kafka_offset LIMIT %s',
        (*params, limit),
    )
    for r in rows:  # the original bytes, exactly: base64 (a record may be any bytes)
        raw = r.pop("raw")
        r["raw_base64"] = base64.b64encode(bytes(raw)).decode() if raw is not None else None
    return rows


def counts_by_reason(conn: Connection) -> dict[str, int]:
    rows = conn.execute("SELECT reason, count(*) FROM rm_projection_errors GROUP BY reason")
    return {str(r): int(n) for r, n in rows.fetchall()}

"""The projector's quarantine: every record it refused to apply (an event that does not verify,
or one it could not project), with the reason, what it claims to be and its original bytes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Limit, Pool, after, reader
from domain.rbac import Principal
from events.signatures import REASONS
from projections import quarantine_queries as qq
from projections import queries

router = APIRouter(tags=["audit"])
REASON_PATTERN = f"^({'|'.join([*REASONS, 'unprojectable'])})$"


@router.get("/quarantine")
async def list_quarantine(
    pool: Pool,
    _: Principal = reader("read:audit"),
    reason: Annotated[str | None, Query(pattern=REASON_PATTERN)] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Any:
    async with pool.connection() as conn:
        rows = await qq.list_quarantined(conn, reason=reason, limit=limit, after=after(cursor))
    last = rows[-1] if len(rows) == limit else None
    nxt = (
        queries.encode_cursor(f"{last['topic']}|{last['kafka_partition']}|{last['kafka_offset']}")
        if last
        else None
    )
    return {"items": rows, "next_cursor": nxt}

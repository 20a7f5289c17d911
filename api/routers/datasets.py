"""Registered datasets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import schemas
from api.deps import Limit, Pool, after, reader
from domain.rbac import Principal
from projections import queries

router = APIRouter(tags=["registry"])
read = reader("read:registry")


@router.get("/datasets", response_model=schemas.DatasetPage)
async def list_datasets(
    pool: Pool,
    _: Principal = read,
    name: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Any:
    async with pool.connection() as conn:
        rows = await queries.list_datasets(conn, name=name, limit=limit, after=after(cursor))
        nxt = (
            queries.encode_cursor(f"{rows[-1]['name']}@{rows[-1]['version']}")
            if len(rows) == limit
            else None
        )
        return {"items": rows, "next_cursor": nxt}

"""Governance: submissions and the approval queue (`?awaiting=` an approver)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import schemas
from api.deps import Limit, Pool, after, next_cursor, reader
from domain.rbac import Principal
from projections import queries

router = APIRouter(tags=["governance"])
read = reader("read:registry")


@router.get("/governance/submissions", response_model=schemas.SubmissionPage)
async def list_submissions(
    pool: Pool,
    _: Principal = read,
    status: Annotated[str | None, Query(pattern="^(pending|approved|rejected)$")] = None,
    model_name: str | None = None,
    awaiting: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Any:
    async with pool.connection() as conn:
        rows = await queries.list_submissions(
            conn,
            status=status,
            model_name=model_name,
            awaiting=awaiting,
            limit=limit,
            after=after(cursor),
        )
        for r in rows:
            r["submission_id"] = str(r["submission_id"])
        return {"items": rows, "next_cursor": next_cursor(rows, limit, "submission_id")}

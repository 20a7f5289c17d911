"""The registry's models: list (filter and paginate), one model (`?as_of=` for the past), its
versions and their lineage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from psycopg import AsyncConnection

from api import schemas
from api.deps import NOT_FOUND, Limit, Pool, after, next_cursor, reader
from domain.rbac import Principal
from projections import queries

router = APIRouter(tags=["registry"])
read = reader("read:registry")


async def _version_or_404(conn: AsyncConnection, name: str, version: str) -> dict[str, Any]:
    row = await queries.get_version(conn, name, version)
    if row is None:
        raise HTTPException(404, f"version {version} of model '{name}' not found")
    return row


@router.get("/models", response_model=schemas.ModelPage)
async def list_models(
    pool: Pool,
    _: Principal = read,
    owner: str | None = None,
    stage: Annotated[
        str | None, Query(pattern="^(development|staging|production|archived)$")
    ] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Any:
    async with pool.connection() as conn:
        rows = await queries.list_models(
            conn, owner=owner, stage=stage, q=q, limit=limit, after=after(cursor)
        )
        return {"items": rows, "next_cursor": next_cursor(rows, limit, "name")}


@router.get("/models/{name}", response_model=schemas.ModelDetail, responses=NOT_FOUND)
async def get_model(
    name: str,
    pool: Pool,
    _: Principal = read,
    as_of: Annotated[
        datetime | None,
        Query(description="ISO time: the stages, versions and approvals as they stood then"),
    ] = None,
) -> Any:
    if as_of is not None:
        when = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
        async with pool.connection() as conn:
            past = await queries.model_as_of(conn, name, when)
        if past is None:
            raise HTTPException(404, f"model '{name}' did not exist at {when.isoformat()}")
        return past
    async with pool.connection() as conn:
        body = await queries.get_model_json(conn, name)
    if body is None:
        raise HTTPException(404, f"model '{name}' not found")
    # Already the documented ModelDetail (tests/e2e/test_read_side.py checks it against
    # the response model), so FastAPI's validate-and-encode step is skipped.
    return Response(body, media_type="application/json")


@router.get(
    "/models/{name}/versions/{version}",
    response_model=schemas.Version,
    responses=NOT_FOUND,
)
async def get_version(name: str, version: str, pool: Pool, _: Principal = read) -> Any:
    async with pool.connection() as conn:
        row = await _version_or_404(conn, name, version)
        return {**row, "stage_history": await queries.stage_history(conn, name, version)}


@router.get(
    "/models/{name}/versions/{version}/lineage",
    response_model=schemas.Lineage,
    responses=NOT_FOUND,
)
async def get_lineage(name: str, version: str, pool: Pool, _: Principal = read) -> Any:
    async with pool.connection() as conn:
        row = await _version_or_404(conn, name, version)
        ancestors: list[str] = []
        parent = row["lineage"].get("parent_version")
        while parent and parent not in ancestors and len(ancestors) < 100:
            ancestors.append(parent)
            prow = await queries.get_version(conn, name, parent)
            parent = prow["lineage"].get("parent_version") if prow else None
        return {
            "model_name": name,
            "version": version,
            "lineage": row["lineage"],
            "ancestors": ancestors,
        }

"""What the routes depend on: the caller (authenticated by the Gate before any parsing), the read
pool, the wiring, and cursor pagination. Dependencies that do no I/O are `async def`: FastAPI
runs them in the event loop instead of sending each through the thread pool."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from psycopg_pool import AsyncConnectionPool

from api import schemas
from domain.rbac import Principal, authorize
from infra.context import Infra
from projections import queries

Limit = Annotated[int, Query(ge=1, le=200)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": schemas.ErrorBody}}


async def principal(request: Request) -> Principal:
    p: Principal = request.state.principal  # set by the authenticating middleware
    return p


def reader(action: str) -> Any:
    async def dep(p: Annotated[Principal, Depends(principal)]) -> Principal:
        authorize(p, action)
        return p

    return Depends(dep)


# Routes take the pool and hold a connection only around their queries (a plain dependency: a
# generator dependency costs FastAPI an exit stack per request).
async def read_pool(request: Request) -> AsyncConnectionPool:
    p: AsyncConnectionPool = request.app.state.pool
    return p


async def wiring(request: Request) -> Infra:
    c: Infra = request.app.state.container
    return c


Pool = Annotated[AsyncConnectionPool, Depends(read_pool)]
Wiring = Annotated[Infra, Depends(wiring)]


def after(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return queries.decode_cursor(cursor)
    except ValueError:
        raise HTTPException(422, "invalid cursor") from None


def next_cursor(rows: list[dict[str, Any]], limit: int, key: str) -> str | None:
    return queries.encode_cursor(str(rows[-1][key])) if len(rows) == limit else None

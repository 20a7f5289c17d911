"""Drift checks and detections (the Monitor's read model) and their Evidently HTML reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from api.deps import NOT_FOUND, Limit, Pool, Wiring, after, reader
from domain.rbac import Principal
from ml.store import ArtifactStore
from projections import monitoring_queries as mq
from projections import queries

router = APIRouter(tags=["monitoring"])
read = reader("read:monitoring")


@router.get("/monitoring/drift")
async def list_drift(
    pool: Pool,
    _: Principal = read,
    model: str | None = None,
    version: str | None = None,
    severity: Annotated[str | None, Query(pattern="^(warning|critical|detected|none)$")] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Any:
    async with pool.connection() as conn:
        rows = await mq.list_checks(
            conn, model=model, version=version, severity=severity, limit=limit, after=after(cursor)
        )
    last = rows[-1] if len(rows) == limit else None
    nxt = queries.encode_cursor(f"{last['checked_at'].isoformat()}|{last['id']}") if last else None
    for r in rows:
        r["report_url"] = _url(r)
    return {"items": rows, "next_cursor": nxt}


def _url(row: dict[str, Any]) -> str | None:
    eid = row.get("detected_event_id")
    return f"/monitoring/drift/{eid}/report.html" if eid and row.get("report_sha256") else None


async def _check(pool: Pool, check_id: str) -> dict[str, Any]:
    async with pool.connection() as conn:
        row = await mq.get_check(conn, check_id)
    if row is None:
        raise HTTPException(404, f"drift check {check_id} not found")
    return row


@router.get(
    "/monitoring/drift/{check_id:path}/report.html", response_class=Response, responses=NOT_FOUND
)
async def drift_report(check_id: str, pool: Pool, c: Wiring, _: Principal = read) -> Response:
    """Evidently's self-contained HTML report (works offline: its JS bundle is embedded)."""
    row = await _check(pool, check_id)
    sha = row.get("report_sha256")
    store = ArtifactStore(c.settings.artifacts_dir)
    if not sha or not store.has(sha):
        raise HTTPException(404, f"drift check {check_id} has no report")
    with store.open(sha) as f:
        return Response(f.read(), media_type="text/html; charset=utf-8")


@router.get("/monitoring/drift/{check_id:path}", responses=NOT_FOUND)
async def get_drift(check_id: str, pool: Pool, _: Principal = read) -> Any:
    row = await _check(pool, check_id)
    return {**row, "report_url": _url(row)}

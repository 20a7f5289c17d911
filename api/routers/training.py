"""Training runs (the TrainingRun saga's read model), and a version's model card and artifact
from the content-addressed store."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from api import schemas
from api.deps import NOT_FOUND, Limit, Pool, Wiring, after, reader
from domain.rbac import Principal
from ml.store import ArtifactStore
from projections import queries
from projections import training_queries as tq

router = APIRouter(tags=["training"])
read = reader("read:registry")


@router.get("/training/runs", response_model=schemas.TrainingRunPage)
async def list_runs(
    pool: Pool,
    _: Principal = read,
    model: str | None = None,
    status: Annotated[
        str | None, Query(pattern="^(running|compensating|completed|failed|cancelled)$")
    ] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Any:
    async with pool.connection() as conn:
        rows = await tq.list_runs(
            conn, model=model, status=status, limit=limit, after=after(cursor)
        )
    last = rows[-1] if len(rows) == limit else None
    nxt = (
        queries.encode_cursor(f"{last['created_at'].isoformat()}|{last['run_id']}")
        if last
        else None
    )
    return {"items": rows, "next_cursor": nxt}


@router.get(
    "/training/runs/{saga_id}", response_model=schemas.TrainingRunDetail, responses=NOT_FOUND
)
async def get_run(saga_id: str, pool: Pool, _: Principal = read) -> Any:
    async with pool.connection() as conn:
        row = await tq.get_run(conn, saga_id)
    if row is None:
        raise HTTPException(404, f"training run {saga_id} not found")
    return row


async def _stored(pool: Pool, c: Wiring, name: str, version: str, key: str) -> tuple[bytes, str]:
    async with pool.connection() as conn:
        artifact = await tq.version_artifact(conn, name, version)
    if artifact is None:
        raise HTTPException(404, f"version {version} of model '{name}' not found")
    sha = artifact.get(key)
    store = ArtifactStore(c.settings.artifacts_dir)
    if not sha or not store.has(sha):
        raise HTTPException(404, f"version {version} of model '{name}' has no {key} in the store")
    with store.open(sha) as f:
        return f.read(), sha


@router.get(
    "/models/{name}/versions/{version}/card",
    tags=["registry"],
    response_class=Response,
    responses={**NOT_FOUND, 200: {"content": {"text/markdown": {}}}},
)
async def get_card(name: str, version: str, pool: Pool, c: Wiring, _: Principal = read) -> Response:
    body, _sha = await _stored(pool, c, name, version, "card_sha256")
    return Response(body, media_type="text/markdown; charset=utf-8")


@router.get(
    "/models/{name}/versions/{version}/manifest",
    tags=["registry"],
    response_class=Response,
    responses={**NOT_FOUND, 200: {"content": {"application/json": {}}}},
)
async def get_manifest(
    name: str, version: str, pool: Pool, c: Wiring, _: Principal = read
) -> Response:
    """The manifest the signature covers with the artifact's digest (input schema, classes,
    preprocessing, hyperparameters), byte for byte as stored."""
    body, _sha = await _stored(pool, c, name, version, "manifest_sha256")
    return Response(body, media_type="application/json")


@router.get(
    "/models/{name}/versions/{version}/artifact",
    tags=["registry"],
    response_class=Response,
    responses={**NOT_FOUND, 200: {"content": {"application/octet-stream": {}}}},
)
async def get_artifact(
    name: str, version: str, pool: Pool, c: Wiring, _: Principal = read
) -> Response:
    body, sha = await _stored(pool, c, name, version, "sha256")
    return Response(
        body,
        media_type="application/octet-stream",
        headers={
            "X-Artifact-SHA256": sha,
            "Content-Disposition": f'attachment; filename="{name}-{version}.safetensors"',
        },
    )

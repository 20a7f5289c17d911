"""Probes: /health (the process answers), /ready (every component, from the health sampler),
/metrics (Prometheus)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import schemas
from infra import health

router = APIRouter(tags=["probes"])


@router.get("/health")
async def alive() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": schemas.ErrorBody}})
async def ready(request: Request) -> Any:
    components = await request.app.state.health.current()
    body = {"components": [dataclasses.asdict(x) for x in components]}
    if health.ready(components):
        return {"status": "ready", **body}
    bad = [f"{x.name} {x.status}" for x in components if not x.healthy]
    return JSONResponse({"detail": f"not ready: {', '.join(bad)}", **body}, 503)


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

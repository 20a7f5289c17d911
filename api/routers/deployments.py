"""Deployments (the serving read model): what each model serves, its canary and share, the
rollout's status, decision and history, and live counters of its results (the serving
controller's, when it runs)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, HTTPException
from prometheus_client.parser import text_string_to_metric_families

from api.deps import NOT_FOUND, Pool, Wiring, reader
from config.services import metrics_port
from domain.rbac import Principal
from projections import serving_queries as sq

router = APIRouter(tags=["serving"])
read = reader("read:serving")
COUNTER = "veritas_served_results"


async def _counters(c: Wiring) -> dict[str, dict[str, dict[str, float]]]:
    """model -> version -> {results, errors} since the controller started ({} when it is down)."""
    url = f"http://127.0.0.1:{metrics_port(c.settings, 'serving-controller')}/metrics"
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            text = (await client.get(url)).text
    except httpx.HTTPError:
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != COUNTER:
            continue
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue
            v = out.setdefault(s.labels["model"], {}).setdefault(
                s.labels["version"], {"results": 0.0, "errors": 0.0}
            )
            v["results"] += s.value
            if s.labels["outcome"] != "ok":
                v["errors"] += s.value
    return out


@router.get("/deployments")
async def list_deployments(pool: Pool, c: Wiring, _: Principal = read) -> Any:
    async with pool.connection() as conn:
        rows = await sq.list_deployments(conn)
    counters = await _counters(c)
    return {"items": [{**r, "counters": counters.get(r["model_name"], {})} for r in rows]}


@router.get("/deployments/{model}", responses=NOT_FOUND)
async def get_deployment(model: str, pool: Pool, c: Wiring, _: Principal = read) -> Any:
    async with pool.connection() as conn:
        row = await sq.get_deployment(conn, model)
    if row is None:
        raise HTTPException(404, f"model '{model}' has no deployment")
    return {**row, "counters": (await _counters(c)).get(model, {})}

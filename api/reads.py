"""Read routes over the projections: models, versions, lineage, datasets, submissions, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import FastAPI, HTTPException, Query, Response
from psycopg import AsyncConnection

from api import schemas
from api.app import Pool, reader
from domain.rbac import Principal
from events.catalog import EVENT_TOPICS
from events.envelope import EventEnvelope, verify_chain
from infra import kafka
from projections import audit, queries
from veritas.bootstrap import Container

Limit = Annotated[int, Query(ge=1, le=200)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": schemas.ErrorBody}}


def _after(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return queries.decode_cursor(cursor)
    except ValueError:
        raise HTTPException(422, "invalid cursor") from None


async def _version_or_404(conn: AsyncConnection, name: str, version: str) -> dict[str, Any]:
    row = await queries.get_version(conn, name, version)
    if row is None:
        raise HTTPException(404, f"version {version} of model '{name}' not found")
    return row


def _next(rows: list[dict[str, Any]], limit: int, key: str) -> str | None:
    return queries.encode_cursor(str(rows[-1][key])) if len(rows) == limit else None


def read_routes(app: FastAPI, c: Container) -> None:
    read = reader("read:registry")

    @app.get("/models", response_model=schemas.ModelPage, tags=["registry"])
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
                conn, owner=owner, stage=stage, q=q, limit=limit, after=_after(cursor)
            )
            return {"items": rows, "next_cursor": _next(rows, limit, "name")}

    @app.get(
        "/models/{name}", response_model=schemas.ModelDetail, tags=["registry"], responses=NOT_FOUND
    )
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

    @app.get(
        "/models/{name}/versions/{version}",
        response_model=schemas.Version,
        tags=["registry"],
        responses=NOT_FOUND,
    )
    async def get_version(name: str, version: str, pool: Pool, _: Principal = read) -> Any:
        async with pool.connection() as conn:
            row = await _version_or_404(conn, name, version)
            return {**row, "stage_history": await queries.stage_history(conn, name, version)}

    @app.get(
        "/models/{name}/versions/{version}/lineage",
        response_model=schemas.Lineage,
        tags=["registry"],
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

    @app.get("/datasets", response_model=schemas.DatasetPage, tags=["registry"])
    async def list_datasets(
        pool: Pool,
        _: Principal = read,
        name: str | None = None,
        limit: Limit = 50,
        cursor: str | None = None,
    ) -> Any:
        async with pool.connection() as conn:
            rows = await queries.list_datasets(conn, name=name, limit=limit, after=_after(cursor))
            nxt = (
                queries.encode_cursor(f"{rows[-1]['name']}@{rows[-1]['version']}")
                if len(rows) == limit
                else None
            )
            return {"items": rows, "next_cursor": nxt}

    @app.get("/governance/submissions", response_model=schemas.SubmissionPage, tags=["governance"])
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
                after=_after(cursor),
            )
            for r in rows:
                r["submission_id"] = str(r["submission_id"])
            return {"items": rows, "next_cursor": _next(rows, limit, "submission_id")}

    @app.get("/audit/verify", response_model=schemas.Verification, tags=["audit"])
    def audit_verify(
        _: Principal = reader("read:audit"),
        source: Annotated[str, Query(pattern="^(store|read_model|topics)$")] = "store",
        topic: Annotated[
            list[str] | None, Query(description="events topics (or copies) to check")
        ] = None,
    ) -> Any:
        if source == "topics":
            names = topic or list(EVENT_TOPICS.values())
            # Only the event topics, or copies of them made for an audit: never an arbitrary or
            # internal topic (a scan reads the whole of it).
            others = [n for n in names if not audit.auditable_topic(n)]
            if others:
                raise HTTPException(
                    422,
                    f"only event topics ({', '.join(EVENT_TOPICS.values())}) or audit copies"
                    f" ({audit.COPY_PREFIX}*) can be verified, not {sorted(others)}",
                )
            if not set(names) <= kafka.existing_topics(c.settings):
                raise HTTPException(
                    404,
                    f"unknown topic(s): {sorted(set(names) - kafka.existing_topics(c.settings))}",
                )
            v = audit.verify_topics(c, names)
        else:
            v = audit.verify_store(c) if source == "store" else audit.verify_read_model(c)
        brk = v.chain_break
        return {
            "source": v.source,
            "aggregates": v.aggregates,
            "events": v.events,
            "undecodable": v.undecodable,
            "valid": v.valid,
            "chain_break": brk.__dict__ if brk else None,
        }

    @app.get(
        "/audit/{aggregate_type}/{aggregate_id}",
        response_model=schemas.AuditTrail,
        tags=["audit"],
        responses=NOT_FOUND,
    )
    async def audit_trail(
        aggregate_type: str, aggregate_id: str, pool: Pool, _: Principal = reader("read:audit")
    ) -> Any:
        async with pool.connection() as conn:
            try:
                rows = await queries.audit_trail(conn, aggregate_type, str(UUID(aggregate_id)))
            except ValueError:
                raise HTTPException(422, "aggregate_id must be a UUID") from None
            if not rows:
                raise HTTPException(404, f"no events for {aggregate_type} {aggregate_id}")
            envs = [EventEnvelope.model_validate(r["envelope"]) for r in rows]
            brk = verify_chain(envs)
            return {
                "aggregate_type": aggregate_type,
                "aggregate_id": aggregate_id,
                "events": [r["envelope"] for r in rows],
                "chain_valid": brk is None,
                "chain_break": brk.__dict__ if brk else None,
            }

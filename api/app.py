"""The FastAPI application: commands in, read models out. Every route but the probes needs a JWT."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool

from api import schemas
from api.middleware import Gate, auth_error_response
from api.openapi import document_auth
from commands.catalog import COMMAND_TOPICS, COMMAND_TYPES
from events.catalog import EVENT_TOPICS
from projections import queries
from projections.apply import load_positions
from veritas import kafka, logs, pg
from veritas.auth import AuthError, Principal, authorize
from veritas.bootstrap import Container, bootstrap


def create_app(container: Container | None = None) -> FastAPI:
    c = container or bootstrap()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.producer = Producer(
            c.kafka_config(**{"enable.idempotence": True, "linger.ms": 1})
        )
        app.state.pool = c.async_pool()
        await app.state.pool.open()
        yield
        await app.state.pool.close()
        app.state.producer.flush(5)
        c.close()

    app = FastAPI(
        title="Veritas",
        version="0.1.0",
        lifespan=lifespan,
        description="Event-sourced control plane for ML models.",
    )
    app.state.container = c
    app.add_middleware(Gate, settings=c.settings)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        return auth_error_response(exc)

    @app.exception_handler(psycopg.DataError)
    async def _bad_value(_: Request, exc: psycopg.DataError) -> JSONResponse:
        # Input the database cannot represent (a NUL byte, say): the caller's fault, not ours.
        return JSONResponse({"detail": f"invalid parameter value: {type(exc).__name__}"}, 422)

    _probe_routes(app, c)
    _command_routes(app, c)
    from api.reads import read_routes

    read_routes(app, c)
    document_auth(app)
    return app


# Dependencies that do no I/O are `async def`: FastAPI runs them in the event loop instead of
# sending each through the thread pool.
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


Pool = Annotated[AsyncConnectionPool, Depends(read_pool)]


def _probe_routes(app: FastAPI, c: Container) -> None:
    @app.get("/health", tags=["probes"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["probes"], responses={503: {"model": schemas.ErrorBody}})
    def ready() -> dict[str, Any]:
        checks: dict[str, Any] = {
            "postgres": pg.is_ready(c.settings.dsn),
            "kafka": kafka.broker_ready(c.settings),
        }
        if all(checks.values()):
            lag = projection_lag(c)
            checks["projection_lag"] = lag
            checks["projections"] = lag <= c.settings.ready_max_lag
        if not (checks["postgres"] and checks["kafka"] and checks.get("projections")):
            raise HTTPException(503, f"not ready: {json.dumps(checks)}")
        return {"status": "ready", **checks}

    @app.get("/metrics", tags=["probes"], response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _partition_key(cmd: schemas.CommandRequest, command_id: str) -> str:
    p = cmd.payload
    return str(p.get("model_name") or p.get("name") or p.get("submission_id") or command_id)


def _command_routes(app: FastAPI, c: Container) -> None:
    @app.post(
        "/commands",
        status_code=202,
        tags=["commands"],
        responses={
            200: {"model": schemas.CommandStatus},
            401: {"model": schemas.ErrorBody},
            422: {"model": schemas.ErrorBody},
        },
    )
    async def post_command(
        body: schemas.CommandRequest,
        request: Request,
        p: Annotated[Principal, Depends(principal)],
        wait: bool = False,
    ) -> Any:
        cls = COMMAND_TYPES.get(body.type)
        if cls is None:
            raise HTTPException(
                422, f"unknown command type {body.type!r}; known: {sorted(COMMAND_TYPES)}"
            )
        authorize(p, body.type)
        command_id = body.command_id or str(uuid.uuid4())
        envelope = {
            "command_id": command_id,
            "type": body.type,
            "schema_version": body.schema_version or cls.schema_version,
            "issued_at": c.clock().isoformat(),
            "correlation_id": body.correlation_id or logs.correlation_id.get(),
            "payload": body.payload,
        }
        producer: Producer = request.app.state.producer
        producer.produce(
            COMMAND_TOPICS[cls.context],
            key=_partition_key(body, command_id),
            value=json.dumps(envelope).encode(),
            headers=[("authorization", request.headers["authorization"].encode())],
        )
        await asyncio.to_thread(producer.flush, 10)
        if wait:
            status = await _wait_for(c, request.app.state.pool, command_id)
            if status is not None:
                return JSONResponse(schemas.CommandStatus(**status).model_dump(mode="json"), 200)
        return schemas.CommandAccepted(command_id=command_id)

    @app.get(
        "/commands/{command_id}",
        response_model=schemas.CommandStatus,
        tags=["commands"],
        responses={404: {"model": schemas.ErrorBody}},
    )
    async def get_command(
        command_id: str, pool: Pool, _: Principal = reader("read:registry")
    ) -> Any:
        async with pool.connection() as conn:
            row = await queries.get_command_status(conn, command_id)
            if row is None:
                raise HTTPException(404, f"no result for command {command_id} (yet)")
            return row


async def _wait_for(
    c: Container, pool: AsyncConnectionPool, command_id: str
) -> dict[str, Any] | None:
    """Read-your-writes: wait for the result and for every event it produced to be projected."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + c.settings.wait_timeout_s
    while loop.time() < deadline:
        async with pool.connection() as conn:
            row = await queries.get_command_status(conn, command_id)
            if row is not None and await queries.events_projected(
                conn, [(e["aggregate_id"], e["version"]) for e in row["events"]]
            ):
                return row
        await asyncio.sleep(0.02)
    return None


def projection_lag(c: Container) -> int:
    """Records on the projected topics that the read models have not applied yet."""
    with c.read_model_connection() as conn:
        stored = load_positions(conn)
    consumer = Consumer(c.kafka_config(**{"group.id": "veritas-ready"}))
    try:
        lag = 0
        for topic in (*EVENT_TOPICS.values(), "commands.results"):
            for p in consumer.list_topics(topic, timeout=5).topics[topic].partitions:
                high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                # A transaction's commit marker takes one offset after its last record.
                lag += max(0, high - stored.get((topic, p), -1) - 2)
        return lag
    finally:
        consumer.close()


app_factory = create_app

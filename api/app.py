"""The FastAPI application: commands in, read models out. Every route but the probes needs a JWT."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool

from api import schemas
from api.middleware import Gate, auth_error_response
from api.openapi import document_auth
from commands.catalog import COMMAND_TOPICS, COMMAND_TYPES
from domain.rbac import AuthError, Principal, authorize
from infra import health, logs
from projections import queries
from projections.apply import count_projection_errors, load_positions
from veritas.bootstrap import Container, bootstrap


def create_app(container: Container | None = None) -> FastAPI:
    c = container or bootstrap()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.producer = Producer(
            c.kafka_config(
                **{
                    "enable.idempotence": True,
                    "linger.ms": 1,
                    # A command not on Kafka within this is answered 503 (the caller may resend it
                    # with the same command_id: commands are idempotent).
                    "message.timeout.ms": int(c.settings.kafka_call_timeout_s * 1000),
                    "message.max.bytes": c.settings.command_max_bytes + 64 * 1024,
                }
            )
        )
        app.state.pool = c.async_pool()
        await app.state.pool.open(wait=False)
        app.state.health = HealthCache(c)
        sampler = asyncio.create_task(app.state.health.run())
        yield
        sampler.cancel()
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
    async def alive() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["probes"], responses={503: {"model": schemas.ErrorBody}})
    async def ready(request: Request) -> Any:
        components = await request.app.state.health.current()
        body = {"components": [dataclasses.asdict(x) for x in components]}
        if health.ready(components):
            return {"status": "ready", **body}
        bad = [f"{x.name} {x.status}" for x in components if not x.healthy]
        return JSONResponse({"detail": f"not ready: {', '.join(bad)}", **body}, 503)

    @app.get("/metrics", tags=["probes"], response_class=Response)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _partition_key(cmd: schemas.CommandRequest, command_id: str) -> str:
    p = cmd.payload
    return str(
        p.get("run_id")
        or p.get("model_name")
        or p.get("name")
        or p.get("submission_id")
        or command_id
    )


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
        value = json.dumps(envelope).encode()
        if len(value) > c.settings.command_max_bytes:
            raise HTTPException(
                413,
                f"the command is {len(value)} bytes; the limit is {c.settings.command_max_bytes}",
            )
        await _deliver(
            request.app.state.producer,
            c.settings.kafka_call_timeout_s,
            COMMAND_TOPICS[cls.context],
            key=_partition_key(body, command_id),
            value=value,
            headers=[("authorization", request.headers["authorization"].encode())],
        )
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


async def _deliver(producer: Producer, timeout_s: float, topic: str, **message: Any) -> None:
    """Produce one command and wait until Kafka has it; 503 when it does not in time."""
    outcome: list[KafkaError | None] = []
    try:
        producer.produce(topic, on_delivery=lambda err, _: outcome.append(err), **message)
    except (BufferError, KafkaException) as exc:
        raise HTTPException(503, f"Kafka refused the command ({exc}); send it again") from None
    await asyncio.to_thread(producer.flush, timeout_s + 1)
    if not outcome or outcome[0] is not None:
        why = outcome[0] if outcome else "no answer in time"
        raise HTTPException(
            503,
            f"the command did not reach Kafka ({why}); send it again with the same command_id",
        )


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


class HealthCache:
    """The API samples the stack's health in the background (infra.health) and /ready answers
    from the latest sample; a stale one (the sampler stuck) is replaced on demand."""

    def __init__(self, c: Container) -> None:
        self.c = c
        self.at = 0.0
        self.components: list[health.Component] = []

    def _sample(self) -> list[health.Component]:
        try:
            return health.sample(self.c.settings, load_positions, count_projection_errors)
        except Exception as exc:  # a probe that fails is itself a finding, never a 500
            return [health.Component("health-probe", "down", f"{type(exc).__name__}: {exc}")]

    async def refresh(self) -> list[health.Component]:
        self.components = await asyncio.to_thread(self._sample)
        self.at = time.monotonic()
        return self.components

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.c.settings.health_sample_s)

    async def current(self) -> list[health.Component]:
        if time.monotonic() - self.at > 3 * self.c.settings.health_sample_s:
            return await self.refresh()
        return self.components


app_factory = create_app

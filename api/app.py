"""The FastAPI application: commands in, read models out. Every route but the probes needs a JWT
(the Gate middleware authenticates before anything parses a request). Routes live in one router
per resource (api/routers), their dependencies in api/deps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from confluent_kafka import Producer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.health_cache import HealthCache
from api.middleware import Gate, auth_error_response
from api.openapi import document_auth
from api.routers import (
    audit,
    commands,
    datasets,
    deployments,
    governance,
    models,
    monitoring,
    probes,
    quarantine,
    training,
)
from domain.rbac import AuthError
from veritas.bootstrap import Container, bootstrap

ROUTERS = (
    probes,
    commands,
    models,
    datasets,
    governance,
    audit,
    quarantine,
    training,
    monitoring,
    deployments,
)


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

    for module in ROUTERS:
        app.include_router(module.router)
    document_auth(app)
    return app


app_factory = create_app

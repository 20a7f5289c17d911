"""POST /commands (202 with the command_id; `?wait=true` reads your own writes) and
GET /commands/{id}."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any

from confluent_kafka import KafkaError, KafkaException, Producer
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from api import schemas
from api.deps import Pool, Wiring, principal, reader
from commands.catalog import COMMAND_TOPICS, COMMAND_TYPES
from domain.rbac import Principal, authorize
from infra import logs
from infra.context import Infra
from projections import queries

router = APIRouter(tags=["commands"])


def _partition_key(cmd: schemas.CommandRequest, command_id: str) -> str:
    p = cmd.payload
    return str(
        p.get("run_id")
        or p.get("model_name")
        or p.get("name")
        or p.get("submission_id")
        or command_id
    )


@router.post(
    "/commands",
    status_code=202,
    responses={
        200: {"model": schemas.CommandStatus},
        401: {"model": schemas.ErrorBody},
        422: {"model": schemas.ErrorBody},
    },
)
async def post_command(
    body: schemas.CommandRequest,
    request: Request,
    c: Wiring,
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


@router.get(
    "/commands/{command_id}",
    response_model=schemas.CommandStatus,
    responses={404: {"model": schemas.ErrorBody}},
)
async def get_command(command_id: str, pool: Pool, _: Principal = reader("read:registry")) -> Any:
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


async def _wait_for(c: Infra, pool: AsyncConnectionPool, command_id: str) -> dict[str, Any] | None:
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

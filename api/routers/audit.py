"""The audit: verify the hash chains of the store, the topics or the read model's copy, and one
aggregate's history."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query

from api import schemas
from api.deps import NOT_FOUND, Pool, Wiring, reader
from domain.rbac import Principal
from events.catalog import EVENT_TOPICS
from events.envelope import EventEnvelope, verify_chain
from infra import kafka
from projections import audit, queries

router = APIRouter(tags=["audit"])


@router.get("/audit/verify", response_model=schemas.Verification)
def audit_verify(
    c: Wiring,
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


@router.get(
    "/audit/{aggregate_type}/{aggregate_id}",
    response_model=schemas.AuditTrail,
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

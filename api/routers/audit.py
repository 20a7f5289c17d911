"""The audit: verify the log (the store against the event topics: hashes, chains, signatures),
the store, the topics or the read model's copy alone, and one aggregate's history (from the store);
and the public keys events are verified with."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query

from api import schemas
from api.deps import NOT_FOUND, Wiring, reader
from domain.rbac import Principal
from events.catalog import EVENT_TOPICS
from infra import kafka, keys
from projections import audit, log_audit
from projections.log_check import Listed, SourceCheck

router = APIRouter(tags=["audit"])


def _problems(listed: Listed) -> list[dict[str, Any]]:
    return [asdict(p) for p in listed.items]


def _summary(check: SourceCheck) -> dict[str, Any]:
    brk = check.chain_break
    return {
        "source": check.source,
        "aggregates": check.aggregates,
        "events": check.events,
        "refused_count": check.refused.count,
        "chain_break": brk.__dict__ if brk else None,
    }


def _log(c: Wiring) -> dict[str, Any]:
    r = log_audit.verify_log(c)
    cmp = r.comparison
    first = r.store.chain_break or r.kafka.chain_break
    return {
        "source": "log",
        "aggregates": r.store.aggregates,
        "events": r.store.events,
        "undecodable": len(r.undecodable),
        "valid": r.valid,
        "chain_break": first.__dict__ if first else None,
        "refused": _problems(r.store.refused) + _problems(r.kafka.refused),
        "refused_count": r.store.refused.count + r.kafka.refused.count,
        "only_in_store": _problems(cmp.only_in_store),
        "only_in_kafka": _problems(cmp.only_in_kafka),
        "conflicting": _problems(cmp.conflicting),
        "counts": {
            "only_in_store": cmp.only_in_store.count,
            "only_in_kafka": cmp.only_in_kafka.count,
            "conflicting": cmp.conflicting.count,
            "not_yet_relayed": cmp.not_yet_relayed,
        },
        "relayed_upto": r.relayed_upto,
        "sources": [_summary(r.store), _summary(r.kafka)],
    }


def _topics(c: Wiring, topic: list[str] | None) -> audit.Verification:
    names = topic or list(EVENT_TOPICS.values())
    # Only the event topics, or copies of them made for an audit: never an arbitrary or internal
    # topic (a scan reads the whole of it).
    others = [n for n in names if not audit.auditable_topic(n)]
    if others:
        raise HTTPException(
            422,
            f"only event topics ({', '.join(EVENT_TOPICS.values())}) or audit copies"
            f" ({audit.COPY_PREFIX}*) can be verified, not {sorted(others)}",
        )
    if not set(names) <= kafka.existing_topics(c.settings):
        raise HTTPException(
            404, f"unknown topic(s): {sorted(set(names) - kafka.existing_topics(c.settings))}"
        )
    return audit.verify_topics(c, names)


@router.get("/audit/verify", response_model=schemas.Verification)
def audit_verify(
    c: Wiring,
    _: Principal = reader("read:audit"),
    source: Annotated[str, Query(pattern="^(log|store|read_model|topics)$")] = "log",
    topic: Annotated[
        list[str] | None, Query(description="events topics (or copies) to check")
    ] = None,
) -> Any:
    """source=log (the default): every event of the store and of the event topics, checked and
    compared. store, read_model, topics: one source alone (hashes, chains and signatures)."""
    if source == "log":
        return _log(c)
    if source == "topics":
        v = _topics(c, topic)
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
        "refused": [asdict(p) for p in v.refused],
        "refused_count": v.refused_count,
    }


@router.get(
    "/audit/{aggregate_type}/{aggregate_id}",
    response_model=schemas.AuditTrail,
    responses=NOT_FOUND,
)
def audit_trail(
    aggregate_type: str, aggregate_id: str, c: Wiring, _: Principal = reader("read:audit")
) -> Any:
    """The aggregate's events from the event store, their hashes, chain and signatures checked,
    and the read model's copy compared with them."""
    try:
        agg = str(UUID(aggregate_id))
    except ValueError:
        raise HTTPException(422, "aggregate_id must be a UUID") from None
    a = log_audit.verify_aggregate(c, agg)
    events = [e for e in a.events if e["aggregate_type"] == aggregate_type]
    if not events and not a.read_model_extra.count:
        raise HTTPException(404, f"no events for {aggregate_type} {aggregate_id}")
    brk = a.store.chain_break
    return {
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "source": "store",
        "events": events,
        "chain_valid": a.store.valid,
        "chain_break": brk.__dict__ if brk else None,
        "refused": _problems(a.store.refused),
        "read_model_matches": not a.read_model_extra.count,
        "read_model_extra": _problems(a.read_model_extra),
    }


@router.get("/keys", response_model=schemas.PublishedKeys)
def published_keys(c: Wiring, _: Principal = reader("read:audit")) -> Any:
    """Every public key events were signed with (retired ones too): no private material."""
    return {"keys": [k.published() for k in keys.public_keys(c.settings)]}

"""Runs a batch of raw command messages to their outcomes: a result each, or a dead letter.

The whole batch is committed in one transaction (events plus results). If any write conflicts
(another handler instance touched an aggregate, or a command_id raced in), the batch falls back to
one transaction per command with bounded retries, so one conflict never rejects its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from commands.decoding import DeadLetter, Ready, decode
from commands.handlers import HANDLERS, Deps
from commands.results import CommandResult, EventRef
from domain.base import Meta
from domain.errors import DomainError
from events.envelope import EventEnvelope
from veritas.eventstore import ConcurrencyError, EventStore
from veritas.settings import Settings
from veritas.uow import UnitOfWork

Outcome = CommandResult | DeadLetter
CONFLICTS = Counter("veritas_command_conflicts_total", "Optimistic-concurrency conflicts", ["scope"])
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Incoming:
    value: bytes | None
    authorization: str | None


def _meta(ready: Ready, clock: Clock) -> Meta:
    env = ready.envelope
    return Meta(ready.principal.subject, env.correlation_id or env.command_id, env.command_id, clock())


def _apply(uow: UnitOfWork, ready: Ready, clock: Clock) -> tuple[CommandResult, list[tuple[str, EventEnvelope]]]:
    cid = ready.envelope.command_id
    uow.begin_command()
    try:
        HANDLERS[type(ready.command)](ready.command, deps=Deps(uow, _meta(ready, clock)))
    except DomainError as exc:
        uow.rollback_command()
        return CommandResult.rejected(cid, exc.reason_code, exc.message, exc.sub_code), []
    events = uow.end_command()
    refs = [EventRef(event_id=e.event_id, aggregate_id=e.aggregate_id, version=e.version) for _, e in events]
    return CommandResult(command_id=cid, status="accepted", events=refs), events


def process_batch(
    items: Sequence[Incoming], *, store: EventStore, settings: Settings, clock: Clock
) -> list[Outcome]:
    decoded = [decode(settings, i.value, i.authorization) for i in items]
    ids = [d.envelope.command_id if isinstance(d, Ready) else d.command_id for d in decoded
           if not isinstance(d, DeadLetter)]
    known = store.find_results(ids)
    outcomes: list[Outcome | None] = [None] * len(decoded)
    fresh: dict[str, CommandResult] = {}
    events: list[tuple[str, EventEnvelope]] = []
    uow = UnitOfWork(store)
    for i, d in enumerate(decoded):
        if isinstance(d, DeadLetter):
            outcomes[i] = d
            continue
        cid = d.envelope.command_id if isinstance(d, Ready) else d.command_id
        if cid in known or cid in fresh:
            outcomes[i] = known.get(cid) or fresh[cid]
            continue
        if isinstance(d, Ready):
            result, new = _apply(uow, d, clock)
            events.extend(new)
        else:
            result = d
        fresh[cid] = result
        outcomes[i] = result
    try:
        store.commit(events, list(fresh.values()))
    except ConcurrencyError:
        CONFLICTS.labels("batch").inc()
        return _one_by_one(decoded, store=store, settings=settings, clock=clock)
    return [o for o in outcomes if o is not None]


def _one_by_one(
    decoded: Sequence[Ready | CommandResult | DeadLetter], *, store: EventStore, settings: Settings, clock: Clock
) -> list[Outcome]:
    out: list[Outcome] = []
    for d in decoded:
        if isinstance(d, DeadLetter):
            out.append(d)
            continue
        out.append(_commit_single(d, store=store, settings=settings, clock=clock))
    return out


def _commit_single(
    d: Ready | CommandResult, *, store: EventStore, settings: Settings, clock: Clock
) -> CommandResult:
    cid = d.envelope.command_id if isinstance(d, Ready) else d.command_id
    for _ in range(settings.handler_conflict_retries):
        if (known := store.find_results([cid]).get(cid)) is not None:
            return known
        result, events = _apply(UnitOfWork(store), d, clock) if isinstance(d, Ready) else (d, [])
        try:
            store.commit(events, [result])
            return result
        except ConcurrencyError:
            CONFLICTS.labels("command").inc()
            continue
    result = CommandResult.rejected(
        cid, "conflict", f"gave up after {settings.handler_conflict_retries} concurrent-update retries"
    )
    try:
        store.commit([], [result])
    except ConcurrencyError:
        return store.find_results([cid]).get(cid, result)
    return result

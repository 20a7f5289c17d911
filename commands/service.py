"""Runs a batch of raw command messages to their outcomes: a result each, or a dead letter.

The whole batch is committed in one transaction (events plus results). If any write conflicts
(another handler instance touched an aggregate, or a command_id raced in), the batch falls back to
one transaction per command with bounded retries, so one conflict never rejects its neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeGuard

from prometheus_client import Counter

from commands.decoding import DeadLetter, Ready, decode
from commands.deps import Deps, ServingConfig, TrainingConfig
from commands.handlers import HANDLERS, PREFETCH
from config.settings import Settings
from domain.base import Meta
from domain.errors import DomainError
from events.envelope import EventEnvelope
from events.results import CommandResult, EventRef
from infra import logs
from infra.faults import transient
from infra.postgres.eventstore import ConcurrencyError, EventStore
from infra.postgres.uow import UnitOfWork

log = logging.getLogger("veritas.commands")
Outcome = CommandResult | DeadLetter
# Rejections decided before we know who sent a command are answered but not remembered: otherwise
# anyone could claim a command_id first and poison the real command's result.
_NOT_REMEMBERED = {"unauthenticated", "forbidden"}
CONFLICTS = Counter(
    "veritas_command_conflicts_total", "Optimistic-concurrency conflicts", ["scope"]
)
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Incoming:
    value: bytes | None
    authorization: str | None
    topic: str | None  # where it was read from: each command type has its own context's topic


def _meta(ready: Ready, clock: Clock) -> Meta:
    env = ready.envelope
    return Meta(
        ready.principal.subject, env.correlation_id or env.command_id, env.command_id, clock()
    )


def training_config(settings: Settings) -> TrainingConfig:
    return TrainingConfig(
        fault_injection=settings.training_fault_injection,
        max_attempts=settings.training_max_attempts,
        step_deadline_s=dict(settings.training_step_deadlines_s),
    )


def _apply(
    uow: UnitOfWork, ready: Ready, clock: Clock, settings: Settings
) -> tuple[Outcome, list[tuple[str, EventEnvelope]]]:
    cid = ready.envelope.command_id
    uow.begin_command()
    meta = _meta(ready, clock)
    try:
        with logs.correlated(meta.correlation_id):
            HANDLERS[type(ready.command)](
                ready.command,
                deps=Deps(
                    uow,
                    meta,
                    training_config(settings),
                    ServingConfig(settings.serving_fault_injection),
                ),
            )
    except DomainError as exc:
        uow.rollback_command()
        return CommandResult.rejected(cid, exc.reason_code, exc.message, exc.sub_code), []
    except Exception as exc:
        if transient(exc):
            raise  # infrastructure trouble: the worker retries the whole batch
        # A bug in one command's handling must not block its partition: dead-letter it.
        log.exception("handler failed on command %s", cid)
        uow.rollback_command()
        return DeadLetter("handler_error", f"{type(exc).__name__}: {exc}"), []
    if (oversized := _oversized(uow.recorded(), settings.event_max_bytes)) is not None:
        uow.rollback_command()
        return CommandResult.rejected(cid, "too_large", oversized), []
    events = uow.end_command()
    refs = [
        EventRef(event_id=e.event_id, aggregate_id=e.aggregate_id, version=e.version)
        for _, e in events
    ]
    return CommandResult(command_id=cid, status="accepted", events=refs), events


def _oversized(events: list[tuple[str, EventEnvelope]], limit: int) -> str | None:
    """The relay must be able to publish every event: none may outgrow a Kafka message."""
    for _, env in events:
        if (size := len(env.to_bytes())) > limit:
            return f"its {env.type} event would be {size} bytes, over the limit of {limit} (event_max_bytes)"
    return None


def _prefetch(
    uow: UnitOfWork, decoded: list[Ready | CommandResult | DeadLetter], known: set[str]
) -> None:
    wanted = [
        a
        for d in decoded
        if isinstance(d, Ready) and _cid(d) not in known
        for a in PREFETCH[type(d.command)](d.command)
    ]
    try:
        uow.prefetch(wanted)
    except ValueError:
        # A stored event that cannot be read back (written before the input limits): each
        # command then loads its own aggregates, and only those touching it are dead-lettered.
        log.exception("prefetch failed; loading aggregates one command at a time")


def _remembered(outcome: Outcome) -> TypeGuard[CommandResult]:
    return isinstance(outcome, CommandResult) and outcome.reason_code not in _NOT_REMEMBERED


def _cid(d: Ready | CommandResult) -> str:
    return d.envelope.command_id if isinstance(d, Ready) else d.command_id


def process_batch(
    items: Sequence[Incoming], *, store: EventStore, settings: Settings, clock: Clock
) -> list[Outcome]:
    """Every item's outcome. Only a transient fault (a dependency down) raises: the caller retries
    the batch. Anything else that breaks the batch is found out message by message, and the
    message that fails alone becomes a dead letter, so one message never stops a partition."""
    try:
        return _process(items, store=store, settings=settings, clock=clock)
    except Exception as exc:
        if transient(exc) or len(items) == 1:
            raise
        log.exception("batch of %d failed; processing its messages one by one", len(items))
        return [_alone(i, store=store, settings=settings, clock=clock) for i in items]


def _alone(item: Incoming, *, store: EventStore, settings: Settings, clock: Clock) -> Outcome:
    try:
        return _process([item], store=store, settings=settings, clock=clock)[0]
    except Exception as exc:
        if transient(exc):
            raise
        log.exception("message failed on its own: dead-lettered")
        return DeadLetter("handler_error", f"{type(exc).__name__}: {exc}")


def _process(
    items: Sequence[Incoming], *, store: EventStore, settings: Settings, clock: Clock
) -> list[Outcome]:
    now = clock()
    decoded = [decode(settings, i.value, i.authorization, i.topic, now) for i in items]
    # A command_id already answered gets its stored result, whatever its bytes decode to now.
    known = store.find_results([_cid(d) for d in decoded if not isinstance(d, DeadLetter)])
    outcomes: list[Outcome] = []
    fresh: dict[str, CommandResult] = {}
    events: list[tuple[str, EventEnvelope]] = []
    uow = UnitOfWork(store)
    _prefetch(uow, decoded, set(known))
    for d in decoded:
        if isinstance(d, DeadLetter):
            outcomes.append(d)
            continue
        cid = _cid(d)
        if cid in known or cid in fresh:
            outcomes.append(known.get(cid) or fresh[cid])
            continue
        outcome, new = _apply(uow, d, clock, settings) if isinstance(d, Ready) else (d, [])
        events.extend(new)
        if _remembered(outcome):
            fresh[cid] = outcome
        outcomes.append(outcome)
    try:
        store.commit(events, list(fresh.values()))
    except ConcurrencyError:
        CONFLICTS.labels("batch").inc()
        return [
            d
            if isinstance(d, DeadLetter)
            else _commit_single(d, store=store, settings=settings, clock=clock)
            for d in decoded
        ]
    return outcomes


def _commit_single(
    d: Ready | CommandResult, *, store: EventStore, settings: Settings, clock: Clock
) -> Outcome:
    cid = _cid(d)
    for _ in range(settings.handler_conflict_retries):
        if (known := store.find_results([cid]).get(cid)) is not None:
            return known
        outcome, events = (
            _apply(UnitOfWork(store), d, clock, settings) if isinstance(d, Ready) else (d, [])
        )
        if not _remembered(outcome):
            return outcome
        try:
            store.commit(events, [outcome])
            return outcome
        except ConcurrencyError:
            CONFLICTS.labels("command").inc()
    result = CommandResult.rejected(
        cid,
        "conflict",
        f"gave up after {settings.handler_conflict_retries} concurrent-update retries",
    )
    try:
        store.commit([], [result])
    except ConcurrencyError:
        return store.find_results([cid]).get(cid, result)
    return result

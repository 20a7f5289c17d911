"""What a process manager (saga) gives the runtime, and what the runtime gives its policy. Pure: no
I/O here, and none in the functions a saga supplies except `open_aggregates`.

A saga is a `ProcessManager`:

* `load_state(events) -> S` folds one aggregate's stored events (in version order) into a state.
* `policy(state, input) -> [OutgoingCommand]` decides. `input` is the triggering stored event
  (and `state` is the aggregate as of that event, that event included), or a `TimerFired` (and
  `state` is the aggregate as it is now). Same input, same output: a redelivered event is decided
  again from the same history, so it yields the same commands with the same ids.
* `timers(state) -> [Timer]` the due times the state holds (step deadlines, retry backoff). They
  are facts in the aggregate's events, so they survive any restart; the runtime keeps an
  in-memory heap of them only as an index.
* `open_aggregates(container) -> [aggregate id]` is called once at start to rebuild that heap: the
  aggregates that may hold open timers (a query the saga owns; I/O allowed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson

from commands.catalog import COMMAND_TYPES
from events.envelope import EventEnvelope

if TYPE_CHECKING:
    from infra.context import Infra as Container

S = TypeVar("S")
COMMAND_ID_NAMESPACE = uuid5(NAMESPACE_URL, "https://veritas.dev/saga-commands")


@dataclass(frozen=True)
class OutgoingCommand:
    """A command for the command handler (or a step worker). `key` is the Kafka key: the target
    aggregate's id, so one aggregate's commands stay in order. `topic` defaults to the command
    type's context topic (commands.catalog)."""

    type: str
    payload: Mapping[str, Any]
    key: str
    topic: str | None = None
    schema_version: int | None = None  # default: the catalog's current version of the type, or 1


@dataclass(frozen=True, order=True)
class Timer:
    """ "Call me at `due_at` about this aggregate"; `key` names it within the aggregate
    (e.g. "deadline:train" or "retry:validate:2")."""

    due_at: datetime
    key: str


@dataclass(frozen=True)
class TimerFired:
    aggregate_id: UUID
    key: str
    due_at: datetime


PolicyInput = EventEnvelope | TimerFired


def no_timers(state: object) -> Iterable[Timer]:
    return ()


def no_open_aggregates(container: Container) -> Iterable[UUID]:
    return ()


@dataclass(frozen=True)
class ProcessManager(Generic[S]):
    name: str  # consumer group veritas-saga-<name>, principal saga:<name>, metrics label
    topics: tuple[str, ...]  # event topics to consume (created by `veritas init`)
    load_state: Callable[[Sequence[EventEnvelope]], S]
    policy: Callable[[S, PolicyInput], Sequence[OutgoingCommand]]
    # Events of other aggregate types on the same topics are ignored without a store read.
    aggregate_types: frozenset[str] | None = None
    timers: Callable[[S], Iterable[Timer]] = no_timers
    open_aggregates: Callable[[Container], Iterable[UUID]] = no_open_aggregates
    roles: tuple[str, ...] = ("ml_engineer",)  # the service principal's roles (RBAC)
    metrics_slot: int = 0  # metrics on settings.saga_metrics_base + this

    @property
    def group_id(self) -> str:
        return f"veritas-saga-{self.name}"

    @property
    def subject(self) -> str:
        return f"saga:{self.name}"

    def wants(self, env: EventEnvelope) -> bool:
        return self.aggregate_types is None or env.aggregate_type in self.aggregate_types


def event_cause(env: EventEnvelope) -> str:
    return f"event/{env.event_id}"


def timer_cause(fired: TimerFired) -> str:
    return f"timer/{fired.aggregate_id}/{fired.key}/{fired.due_at.astimezone(UTC).isoformat()}"


def command_id(saga: str, cause: str, index: int, command_type: str) -> str:
    """Deterministic: the same saga, cause (triggering event or timer) and position give the same
    id on every redelivery, so the command handler's results table answers repeats (guarantee
    2). The type is part of it, so a different decision can never reuse another's id."""
    return str(uuid5(COMMAND_ID_NAMESPACE, f"{saga}/{cause}/{index}/{command_type}"))


def _current_version(command_type: str) -> int:
    cls = COMMAND_TYPES.get(command_type)
    return cls.schema_version if cls else 1


def envelope_bytes(
    cmd: OutgoingCommand, command_id: str, correlation_id: str | None, issued_at: datetime
) -> bytes:
    """DESIGN's command envelope."""
    doc: dict[str, Any] = {
        "command_id": command_id,
        "type": cmd.type,
        "schema_version": cmd.schema_version or _current_version(cmd.type),
        "issued_at": issued_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "payload": dict(cmd.payload),
    }
    if correlation_id:
        doc["correlation_id"] = correlation_id[:128]
    return orjson.dumps(doc)


def stored_match(events: Sequence[EventEnvelope], env: EventEnvelope) -> EventEnvelope | None:
    """The stored event the message claims to be, if the store holds exactly that event: same
    aggregate and version, same event_id and hash, same content field by field. None for anything
    else (a forged record, a tampered one, a stray one)."""
    if not 1 <= env.version <= len(events):
        return None
    stored = events[env.version - 1]
    return stored if stored == env else None

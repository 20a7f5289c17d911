"""Quarantine per message, never per batch: whatever fails on one message alone (a handler bug, a
value the store refuses) becomes that message's dead letter, and its neighbours go on. Only a
dependency that is down stops the batch, and then nothing of it is lost: the caller retries."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest

from commands import handlers
from commands.decoding import DeadLetter
from events.envelope import EventEnvelope
from events.results import CommandResult
from infra.memory_store import InMemoryEventStore
from tests.unit.harness import Harness


def _model(name: str) -> dict[str, str]:
    return {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}


class RefusingStore(InMemoryEventStore):
    """Refuses (deterministically) any commit holding an event of the model named `poison`, or
    (transiently) every commit while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def commit(
        self, events: Sequence[tuple[str, EventEnvelope]], results: Sequence[CommandResult]
    ) -> None:
        if self.down:
            raise psycopg.OperationalError("the database system is shutting down")
        if any(e.payload.get("name") == "poison" for _, e in events):
            raise psycopg.DataError("invalid byte sequence for encoding UTF8")
        super().commit(events, results)


def test_a_value_the_store_refuses_dead_letters_that_command_only() -> None:
    h = Harness(store=RefusingStore())
    out = h.batch(
        h.msg("alice", "RegisterModel", _model("a")),
        h.msg("alice", "RegisterModel", _model("poison")),
        h.msg("alice", "RegisterModel", _model("b")),
    )
    assert [type(o).__name__ for o in out] == ["CommandResult", "DeadLetter", "CommandResult"]
    assert isinstance(out[1], DeadLetter) and out[1].reason == "handler_error"
    assert "DataError" in out[1].detail
    assert all(o.status == "accepted" for o in (out[0], out[2]) if isinstance(o, CommandResult))


def test_a_handler_bug_on_one_command_dead_letters_it_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from commands.registry import RegisterModel

    real = handlers.HANDLERS[RegisterModel]

    def buggy(cmd: RegisterModel, *, deps: handlers.Deps) -> None:
        if cmd.name == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        real(cmd, deps=deps)

    monkeypatch.setitem(handlers.HANDLERS, RegisterModel, buggy)
    h = Harness()
    out = h.batch(
        h.msg("alice", "RegisterModel", _model("x")),
        h.msg("alice", "RegisterModel", _model("boom")),
        h.msg("alice", "RegisterModel", _model("y")),
    )
    assert isinstance(out[1], DeadLetter) and out[1].reason == "handler_error"
    assert [o.status for o in (out[0], out[2]) if isinstance(o, CommandResult)] == ["accepted"] * 2


def test_a_dependency_that_is_down_stops_the_batch_and_loses_nothing() -> None:
    store = RefusingStore()
    h = Harness(store=store)
    batch = [h.msg("alice", "RegisterModel", _model(n)) for n in ("p", "q")]
    store.down = True
    with pytest.raises(psycopg.OperationalError):
        h.batch(*batch)
    store.down = False
    out = h.batch(*batch)  # the worker's retry
    assert [o.status for o in out if isinstance(o, CommandResult)] == ["accepted", "accepted"]

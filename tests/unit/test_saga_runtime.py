"""The saga runtime's pure parts and its per-event logic, without a broker: deterministic command
ids, the store check, the state a policy sees, the timer heap, the service token and the faust
configuration (read_committed included)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from faust.types import TP

from config.settings import Settings
from events.envelope import GENESIS_HASH, EventEnvelope, seal
from infra.auth import authenticate
from infra.memory_store import InMemoryEventStore
from sagas.model import (
    OutgoingCommand,
    PolicyInput,
    ProcessManager,
    Timer,
    TimerFired,
    command_id,
    envelope_bytes,
    event_cause,
    stored_match,
    timer_cause,
)
from veritas.bootstrap import bootstrap
from workers.sagas import principal as principal_module
from workers.sagas import transport
from workers.sagas.app import make_app
from workers.sagas.principal import ServiceToken
from workers.sagas.runtime import Runtime
from workers.sagas.timers import TimerBook

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _event(agg: Any, version: int, prev: str, etype: str, payload: dict[str, Any]) -> EventEnvelope:
    return seal(
        {
            "event_id": uuid4(),
            "type": etype,
            "schema_version": 1,
            "aggregate_type": "job",
            "aggregate_id": agg,
            "version": version,
            "occurred_at": T0,
            "actor": "t",
            "correlation_id": "corr",
            "causation_id": "cause",
            "payload": payload,
            "prev_hash": prev,
        }
    )


def _stream(n: int) -> list[EventEnvelope]:
    agg, prev, out = uuid4(), GENESIS_HASH, []
    for v in range(1, n + 1):
        e = _event(agg, v, prev, "Step", {"n": v})
        out.append(e)
        prev = e.hash
    return out


def test_command_ids_are_deterministic_and_distinct() -> None:
    env = _stream(1)[0]
    a = command_id("s", event_cause(env), 0, "RegisterModel")
    assert a == command_id("s", event_cause(env), 0, "RegisterModel")
    assert a != command_id("s", event_cause(env), 1, "RegisterModel")
    assert a != command_id("s", event_cause(env), 0, "UpdateModelMetadata")
    assert a != command_id("other", event_cause(env), 0, "RegisterModel")
    fired = TimerFired(env.aggregate_id, "k", T0)
    same_instant = TimerFired(
        env.aggregate_id,
        "k",
        T0.astimezone(pytest.importorskip("zoneinfo").ZoneInfo("Europe/Paris")),
    )
    assert timer_cause(fired) == timer_cause(same_instant)


def test_envelope_is_designs_command_envelope() -> None:
    cmd = OutgoingCommand("RegisterModel", {"name": "m"}, key="k")
    doc = json.loads(envelope_bytes(cmd, "cid", "corr", T0))
    assert doc == {
        "command_id": "cid",
        "type": "RegisterModel",
        "schema_version": 2,  # the catalog's current version of RegisterModel
        "issued_at": "2026-12-01T12:00:00Z",
        "correlation_id": "corr",
        "payload": {"name": "m"},
    }


def test_store_check_wants_the_exact_stored_event() -> None:
    events = _stream(3)
    assert stored_match(events, events[1]) is events[1]
    assert stored_match(events, events[1].model_copy(update={"event_id": uuid4()})) is None
    assert stored_match(events, events[1].model_copy(update={"payload": {"n": 99}})) is None
    assert stored_match(events, events[1].model_copy(update={"aggregate_id": uuid4()})) is None
    assert (
        stored_match(events, _event(events[0].aggregate_id, 4, events[2].hash, "Step", {})) is None
    )
    assert stored_match([], events[0]) is None


def test_timer_book_fires_each_timer_once_and_follows_the_state() -> None:
    book, a, b = TimerBook(), uuid4(), uuid4()
    t1, t2 = Timer(T0, "x"), Timer(T0 + timedelta(seconds=5), "y")
    book.replace(a, 1, [t1, t2])
    book.replace(b, 1, [t1])
    assert len(book) == 3 and book.next_due() == T0
    assert book.pop_due(T0 - timedelta(seconds=1)) == []
    assert sorted(book.pop_due(T0), key=lambda x: str(x[0])) == sorted(
        [(a, t1), (b, t1)], key=lambda x: str(x[0])
    )
    book.replace(a, 2, [t1, t2])  # the state still lists t1: fired already, not again
    assert book.pop_due(T0 + timedelta(seconds=10)) == [(a, t2)]
    assert book.replace(a, 1, [Timer(T0, "stale")]) is False  # older than version 2
    book.replace(a, 3, [])  # the state closed everything: forgotten
    book.replace(a, 4, [t1])  # listed again later: a new fact, fires again
    assert book.pop_due(T0) == [(a, t1)]
    book.retry(a, t1)
    assert book.pop_due(T0) == [(a, t1)]
    assert len(book) == 0 and book.next_due() is None
    with pytest.raises(ValueError):
        book.replace(a, 5, [Timer(datetime(2026, 1, 1), "naive")])


def test_service_token_is_renewed_at_half_life_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings(jwt_ttl_seconds=100)
    issued: list[str] = []
    real = principal_module.issue_token

    def counting(*args: Any, **kw: Any) -> str:
        issued.append(real(*args, **kw))
        return issued[-1]

    monkeypatch.setattr(principal_module, "issue_token", counting)
    now = [1_000_000.0]
    tok = ServiceToken(s, "saga:t", ["ml_engineer"], clock=lambda: now[0])
    first = tok.header()
    now[0] += 49
    assert tok.header() == first and len(issued) == 1
    now[0] += 2
    tok.header()
    assert len(issued) == 2
    principal = authenticate(s, first.decode())
    assert principal.subject == "saga:t"
    assert "Bearer" not in repr(tok) and issued[0] not in repr(tok)


def test_faust_app_settings(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path, kafka_bootstrap_servers="127.0.0.1:1,127.0.0.2:2")
    app = make_app(s, "veritas-saga-t")
    c = app.conf
    assert c.processing_guarantee.value == "at_least_once"
    assert str(c.store) == "memory:"
    assert c.topic_allow_declare is False and c.topic_disable_leader is True
    assert c.consumer_group_instance_id == "veritas-saga-t-0"
    assert c.broker_session_timeout == s.saga_session_timeout_s
    assert c.web_enabled is False
    assert [str(u) for u in c.broker] == [
        "veritas-kafka://127.0.0.1:1",
        "veritas-kafka://127.0.0.2:2",
    ]
    assert Path(c.datadir).is_relative_to(tmp_path)
    assert type(app.transport) is transport.Transport


def test_the_worker_consumer_reads_committed(tmp_path: Path) -> None:
    """faust builds its consumer read_uncommitted under at_least_once; ours read_committed."""
    app = make_app(Settings(var_dir=tmp_path), "veritas-saga-t")

    async def build() -> str:
        consumer = app.consumer
        thread = consumer._new_consumer_thread()  # type: ignore[attr-defined]
        kafka = thread._create_worker_consumer(app.transport)
        return transport.isolation_level(kafka)

    assert asyncio.run(build()) == "read_committed"


# The per-event logic, on the in-memory store with a fake producer ------------------------------


def _policy(state: list[int], what: PolicyInput) -> list[OutgoingCommand]:
    if isinstance(what, TimerFired):
        return [OutgoingCommand("UpdateModelMetadata", {"name": "m"}, "k")]
    return [OutgoingCommand("RegisterModel", {"name": "m", "seen": list(state)}, "k")]


def _state(events: Sequence[EventEnvelope]) -> list[int]:
    return [int(e.payload["n"]) for e in events]


def _runtime(tmp_path: Path, store: InMemoryEventStore) -> tuple[Runtime[list[int]], list[Any]]:
    pm: ProcessManager[list[int]] = ProcessManager(
        name="t",
        topics=("training.events",),
        load_state=_state,
        policy=_policy,
        aggregate_types=frozenset({"job"}),
        timers=lambda st: [Timer(T0, "t")] if len(st) < 3 else [],
    )
    rt = Runtime(pm, bootstrap(Settings(var_dir=tmp_path), store=store))
    sent: list[Any] = []

    async def fake_send(msgs: list[Any]) -> None:
        sent.extend(msgs)

    rt.publisher._send_all = fake_send  # type: ignore[method-assign]
    return rt, sent


def test_handle_decides_on_the_state_as_of_the_event(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    events = _stream(3)
    store.commit([("training", e) for e in events], [])
    rt, sent = _runtime(tmp_path, store)

    async def go() -> None:
        await rt.handle(events[0].to_bytes())
        await rt.handle(events[0].to_bytes())  # a redelivery, after the aggregate moved on

    asyncio.run(go())
    (t1, k1, v1, h1), (_, _, v2, _) = sent
    one, two = json.loads(v1), json.loads(v2)
    assert t1 == "registry.commands" and k1 == b"k"
    assert one["payload"]["seen"] == [1] and one == {**two, "issued_at": one["issued_at"]}
    assert one["command_id"] == command_id("t", event_cause(events[0]), 0, "RegisterModel")
    assert dict(h1)["authorization"].startswith(b"Bearer ")
    assert len(rt.book) == 0  # the aggregate's current state (3 events) has no timers


def test_handle_skips_what_the_store_does_not_hold(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    events = _stream(2)
    store.commit([("training", events[0])], [])
    rt, sent = _runtime(tmp_path, store)
    other = _event(uuid4(), 1, GENESIS_HASH, "Step", {"n": 1}).model_copy(
        update={"aggregate_type": "other"}
    )

    async def go() -> None:
        await rt.handle(events[1].to_bytes())  # not stored (yet, or ever)
        await rt.handle(b"not json")
        await rt.handle(other.to_bytes())  # another aggregate type: ignored, no store read
        await rt.handle(events[0].to_bytes())

    asyncio.run(go())
    assert len(sent) == 1
    assert len(rt.book) == 1  # one event: the state still has its timer


def test_timer_fires_through_the_policy_with_a_timer_id(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    events = _stream(1)
    store.commit([("training", events[0])], [])
    rt, sent = _runtime(tmp_path, store)

    async def go() -> None:
        await rt.handle(events[0].to_bytes())
        await rt._fire_due()
        await rt._fire_due()  # fired once per process

    asyncio.run(go())
    assert len(sent) == 2
    fired = json.loads(sent[1][2])
    cause = timer_cause(TimerFired(events[0].aggregate_id, "t", T0))
    assert fired["command_id"] == command_id("t", cause, 0, "UpdateModelMetadata")
    assert dict(sent[1][3])["veritas.cause"] == cause.encode()


def _commit_after_three_transactions(app: Any, cls: type[Any]) -> int | None:
    """Offsets 0-9, 11-20 and 22-30 received and acked; 10 and 21 are transaction markers. The
    gaps are recorded as faust's fetch loop records them: (last received + 1, this offset)."""
    tp = TP("training.events", 0)

    async def noop(*_: Any) -> None:
        return None

    async def go() -> int | None:
        consumer = cls(
            app.transport,
            callback=noop,
            on_partitions_revoked=noop,
            on_partitions_assigned=noop,
        )
        last = None
        for offset in [*range(0, 10), *range(11, 21), *range(22, 31)]:
            if last is not None and offset - last > 1:
                await consumer._add_gap(tp, last + 1, offset)
            consumer._acked[tp].append(offset)
            consumer._acked_index[tp].add(offset)
            last = offset
        result: int | None = consumer._new_offset(tp)
        return result

    return asyncio.run(go())


def test_offsets_keep_up_across_transaction_markers(tmp_path: Path) -> None:
    from faust.transport.drivers import aiokafka as stock

    app = make_app(Settings(var_dir=tmp_path), "veritas-saga-t")
    assert _commit_after_three_transactions(app, transport.SagaConsumer) == 31
    # faust's own consumer: one transaction per commit
    assert _commit_after_three_transactions(app, stock.Consumer) == 12

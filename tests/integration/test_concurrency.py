"""Guarantee 3: concurrent commands on one aggregate never lose an update. Kafka has no
conditional append, so this runs the handler's batch function from 50 threads straight against
the real Postgres event store, which is the source of concurrency truth."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

from commands.service import CONFLICTS, Incoming, process_batch
from config.settings import Settings
from domain.registry import RegisteredModel, model_id
from infra.memory_store import InMemoryEventStore
from infra.postgres.eventstore import PostgresEventStore, datastore_from_dsn
from tests.helpers import envelope, token


def _now() -> datetime:
    return datetime.now(UTC)


def _store(s: Settings) -> PostgresEventStore:
    store = PostgresEventStore(datastore_from_dsn(s.dsn, s.db_schema, pool_size=1))
    store.create_tables()
    return store


def test_fifty_concurrent_conflicting_commands_lose_no_update(infra: Settings) -> None:
    s, tok = infra, token(infra, "alice", "data_scientist")
    name = f"conc-{uuid.uuid4().hex[:8]}"
    reg = envelope(
        "RegisterModel",
        {"name": name, "description": "d", "intended_use": "u", "limitations": "l"},
        version=2,
    )
    setup_store = _store(s)
    assert (
        process_batch(
            [Incoming(json.dumps(reg).encode(), f"Bearer {tok}", "registry.commands")],
            store=setup_store,
            settings=s,
            clock=_now,
        )[0].status
        == "accepted"
    )
    cmds = [
        envelope("UpdateModelMetadata", {"name": name, "tags": {f"k{i}": f"v{i}"}})
        for i in range(50)
    ]
    stores = [_store(s) for _ in cmds]
    barrier = threading.Barrier(len(cmds))
    results: dict[str, object] = {}

    def send(i: int) -> None:
        barrier.wait()
        out = process_batch(
            [Incoming(json.dumps(cmds[i]).encode(), f"Bearer {tok}", "registry.commands")],
            store=stores[i],
            settings=s,
            clock=_now,
        )
        results[cmds[i]["command_id"]] = out[0]

    retries_before = CONFLICTS.labels("command")._value.get()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(cmds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    accepted = [c for c in cmds if results[c["command_id"]].status == "accepted"]  # type: ignore[attr-defined]
    conflicts = [c for c in cmds if results[c["command_id"]].reason_code == "conflict"]  # type: ignore[attr-defined]
    assert len(accepted) + len(conflicts) == len(
        cmds
    )  # every command answered: applied or reported
    assert len(accepted) >= 10
    assert CONFLICTS.labels("command")._value.get() > retries_before  # the race really happened

    stream = setup_store.load(model_id(name))
    assert [e.version for e in stream] == list(
        range(1, len(accepted) + 2)
    )  # no lost, no doubled event
    final = RegisteredModel.rehydrate(model_id(name), stream)

    serial = InMemoryEventStore()
    batch = [
        Incoming(json.dumps(c).encode(), f"Bearer {tok}", "registry.commands")
        for c in [reg, *accepted]
    ]
    for item in batch:
        process_batch([item], store=serial, settings=s, clock=_now)
    expected = RegisteredModel.rehydrate(model_id(name), serial.load(model_id(name)))
    assert (
        final.tags == expected.tags == {f"k{i}": f"v{i}" for i in range(50) if cmds[i] in accepted}
    )
    assert final.version == expected.version
    for st in [setup_store, *stores]:
        st.datastore.close()

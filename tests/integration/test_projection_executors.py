"""The two executors of the pure projections on real Postgres: the live projector's SQL path
(apply_batch) and the bulk rebuild's in-memory fold + COPY reach identical read models, with the
same positions, for a history that uses every projection. The bulk path refuses what it cannot
reproduce exactly, and flags a tampered chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest

from config.settings import Settings
from events.envelope import EventEnvelope
from events.results import CommandResult
from projections import bulk, bulk_copy
from projections.apply import apply_batch
from projections.digest import digest
from projections.schema import migrate
from tests.helpers import Rec, trust_of
from tests.unit.harness import SETTINGS, Harness

TRUST = trust_of(SETTINGS)  # the harness signs with the key configured in its settings

TOPIC = {"Submission": "governance.events"}


def _history() -> tuple[list[EventEnvelope], list[CommandResult]]:
    h = Harness()
    results = [h.register_model(), h.register_model("churn"), h.register_dataset()]
    results.append(h.send("alice", "UpdateModelMetadata", {"name": "fraud", "tags": {"t": "1"}}))
    results.append(h.send("alice", "UpdateModelMetadata", {"name": "fraud", "limitations": "x"}))
    results += [h.register_version("1.0.0"), h.register_version("1.1.0")]
    results.append(h.promote("1.0.0"))
    results.append(h.promote("1.1.0"))  # archives 1.0.0
    results.append(h.reject(h.submit("1.1.0", stage="staging"), "bob"))
    results.append(
        h.send("erin", "RollbackProduction", {"model_name": "fraud", "reason": "regression"})
    )
    results.append(h.approve(uuid.uuid4(), "bob"))  # rejected: unknown submission
    assert all(isinstance(r, CommandResult) for r in results)
    return h.log(), results


def _records(envs: list[EventEnvelope], results: list[CommandResult]) -> list[Rec]:
    offsets: dict[tuple[str, int], int] = {}
    recs = []
    for seq, env in enumerate(envs, start=1):
        topic, part = TOPIC.get(env.aggregate_type, "registry.events"), env.aggregate_id.int % 3
        off = offsets[(topic, part)] = offsets.get((topic, part), -1) + 1
        recs.append(Rec(topic, part, off, env.to_bytes(), [("notification_id", str(seq).encode())]))
    for i, r in enumerate(results):
        recs.append(Rec("events.results", 0, i, r.to_bytes(), []))
    return recs


@pytest.fixture
def schemas(infra: Settings) -> Iterator[tuple[psycopg.Connection, str, str]]:
    live, rebuilt = (f"rm_x_{uuid.uuid4().hex[:8]}" for _ in range(2))
    with psycopg.connect(infra.dsn, autocommit=True) as conn:
        for schema in (live, rebuilt):
            migrate(conn, schema)
        yield conn, live, rebuilt
        for schema in (live, rebuilt):
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


def _connect(s: Settings, schema: str) -> psycopg.Connection:
    return psycopg.connect(s.dsn, autocommit=True, options=f"-c search_path={schema}")


def _project_both(
    s: Settings, live: str, rebuilt: str, live_recs: list[Rec], bulk_recs: list[Rec]
) -> None:
    """The live projector's path in one batch into `live`, the bulk rebuild into `rebuilt`."""
    with _connect(s, live) as conn, conn.transaction():
        apply_batch(conn, live_recs, {}, TRUST)  # type: ignore[arg-type]
    with _connect(s, rebuilt) as conn:
        bulk.rebuild(conn, iter([bulk_recs]), TRUST)  # type: ignore[list-item]


def test_live_and_bulk_executors_give_identical_read_models(
    infra: Settings, schemas: tuple[psycopg.Connection, str, str]
) -> None:
    admin, live, rebuilt = schemas
    envs, results = _history()
    recs = _records(envs, results)
    with _connect(infra, live) as conn:
        for i in range(0, len(recs), 7):  # several batches, as the projector sees them
            with conn.transaction():
                apply_batch(conn, recs[i : i + 7], {}, TRUST)  # type: ignore[arg-type]
    with _connect(infra, rebuilt) as conn:
        fold = bulk.rebuild(conn, iter([recs[:10], recs[10:]]), TRUST)  # type: ignore[list-item]
    assert fold.records == len(recs)
    assert len(fold.chains) == len({e.aggregate_id for e in envs})

    a, b = digest(admin, live), digest(admin, rebuilt)
    assert a == b
    rows = admin.execute(
        f"SELECT name, production_version, tags, limitations FROM {rebuilt}.rm_models"
        " ORDER BY name".encode()
    ).fetchall()
    assert rows == [
        ("churn", None, {}, "EU only"),
        ("fraud", "1.0.0", {"t": "1"}, "x"),  # rolled back from 1.1.0
    ]
    stages = admin.execute(
        f"SELECT version, stage, jsonb_array_length(approvals) FROM {rebuilt}.rm_model_versions"
        " ORDER BY version".encode()
    ).fetchall()
    assert stages == [("1.0.0", "production", 1), ("1.1.0", "archived", 1)]
    counts = admin.execute(
        f"SELECT (SELECT count(*) FROM {rebuilt}.rm_audit_log),"
        f" (SELECT count(*) FROM {rebuilt}.rm_command_status),"
        f" (SELECT count(*) FROM {rebuilt}.rm_submissions WHERE status = 'rejected')".encode()
    ).fetchone()
    assert counts == (len(envs), len(results), 1)


def test_a_duplicate_delivery_is_applied_once_by_both(
    infra: Settings, schemas: tuple[psycopg.Connection, str, str]
) -> None:
    admin, live, rebuilt = schemas
    envs, results = _history()
    recs = _records(envs, results)
    again = Rec("registry.events", 9, 0, recs[0].value(), [])
    _project_both(infra, live, rebuilt, [*recs, again], [*recs, again])
    assert digest(admin, live) == digest(admin, rebuilt)


def test_results_the_model_coerces_give_the_same_status_rows_in_both(
    infra: Settings, schemas: tuple[psycopg.Connection, str, str]
) -> None:
    admin, live, rebuilt = schemas
    ref = {"event_id": str(uuid.uuid4()).upper(), "aggregate_id": str(uuid.uuid4()), "version": "4"}
    odd = [
        {"command_id": "c-upper", "status": "accepted", "events": [ref]},
        {"command_id": "c-extra", "status": "rejected", "reason_code": "x", "trace": [1]},
    ]
    _, results = _history()
    recs = [Rec("events.results", 0, i, r.to_bytes(), []) for i, r in enumerate(results)]
    recs += [Rec("events.results", 1, i, orjson.dumps(v), []) for i, v in enumerate(odd)]
    _project_both(infra, live, rebuilt, recs, recs)
    assert digest(admin, live) == digest(admin, rebuilt)
    stored = admin.execute(
        f"SELECT events FROM {rebuilt}.rm_command_status WHERE command_id = 'c-upper'".encode()
    ).fetchone()
    assert stored == ([{**ref, "event_id": ref["event_id"].lower(), "version": 4}],)


def test_bulk_refuses_what_only_the_record_path_reproduces(infra: Settings) -> None:
    envs, _ = _history()
    bad = Rec("monitoring.events", 0, 0, b"not an envelope", [])
    with pytest.raises(bulk.BulkUnsupported, match="undecodable"):
        bulk.Fold(TRUST).record(bad)  # type: ignore[arg-type]
    second = next(e for e in envs if e.version == 2)
    with pytest.raises(bulk.BulkUnsupported, match="arrived before"):
        bulk.Fold(TRUST).record(Rec("registry.events", 0, 0, second.to_bytes(), []))  # type: ignore[arg-type]


def test_bulk_refuses_a_tampered_or_unsigned_event(infra: Settings) -> None:
    """The record-by-record path quarantines such events; the bulk one leaves them to it."""
    envs, _ = _history()
    body = envs[0].to_json_dict()
    body["payload"] = {**body["payload"], "owner": "mallory"}
    tampered = EventEnvelope.model_validate(body).to_bytes()
    with pytest.raises(bulk.BulkUnsupported, match="does not extend its chain"):
        bulk.Fold(TRUST).record(Rec("registry.events", 0, 0, tampered, []))  # type: ignore[arg-type]
    unsigned = envs[0].model_copy(update={"key_id": None, "signature": None}).to_bytes()
    with pytest.raises(bulk.BulkUnsupported, match=r"not believed \(unsigned"):
        bulk.Fold(TRUST).record(Rec("registry.events", 0, 0, unsigned, []))  # type: ignore[arg-type]
    clean = bulk.Fold(TRUST)
    clean.record(Rec("registry.events", 0, 0, envs[0].to_bytes(), []))  # type: ignore[arg-type]
    assert clean.chains == {str(envs[0].aggregate_id): (2, envs[0].hash)}


def test_a_copy_on_another_topic_gives_the_same_audit_row_whichever_is_read_first(
    infra: Settings, schemas: tuple[psycopg.Connection, str, str]
) -> None:
    admin, live, rebuilt = schemas
    envs, results = _history()
    recs = _records(envs, results)
    copy = Rec("monitoring.events", 0, 5, recs[0].value(), [])  # sorts before registry.events
    _project_both(infra, live, rebuilt, [*recs, copy], [copy, *recs])
    assert digest(admin, live) == digest(admin, rebuilt)
    where = admin.execute(
        f"SELECT topic, kafka_offset FROM {live}.rm_audit_log WHERE aggregate_id = %s"
        " AND version = 1".encode(),
        (envs[0].aggregate_id,),
    ).fetchone()
    assert where == ("monitoring.events", 5)


def _index_ddl(admin: psycopg.Connection, schema: str) -> list[str]:
    rows = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY indexname", (schema,)
    ).fetchall()
    return [str(r[0]).replace(f"{schema}.", "") for r in rows]


def test_bulk_rebuild_leaves_every_key_and_index_of_a_migrated_schema(
    infra: Settings, schemas: tuple[psycopg.Connection, str, str]
) -> None:
    admin, _, rebuilt = schemas
    before = _index_ddl(admin, rebuilt)
    assert any("rm_audit_log_pkey" in d for d in before)  # keys and indexes to defer
    envs, results = _history()
    with _connect(infra, rebuilt) as conn:
        bulk.rebuild(conn, iter([_records(envs, results)]), TRUST)  # type: ignore[list-item]
    assert _index_ddl(admin, rebuilt) == before


def test_a_duplicate_key_found_only_when_the_index_is_built_is_refused(
    infra: Settings, schemas: tuple[psycopg.Connection, str, str]
) -> None:
    _, _, rebuilt = schemas
    with _connect(infra, rebuilt) as conn:
        ddl = bulk_copy.defer_indexes(conn)
        for _ in range(2):
            conn.execute("INSERT INTO rm_command_status (command_id, status) VALUES ('c', 'x')")
        with pytest.raises(bulk_copy.BulkUnsupported, match="key refused"):
            bulk_copy.restore_indexes(conn, ddl)

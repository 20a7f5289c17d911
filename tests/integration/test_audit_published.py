"""The project's verifiers apply DESIGN's rule to the published JSON, wherever it is kept: the
event store, a topic (or a copy) and the read model's audit log. An event written by other code,
whose JSON no pydantic model would spell the same way, verifies in all three; a one-byte change
breaks it; a record that is no envelope is named with its place and the reason."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from typer.testing import CliRunner

from config.settings import Settings
from events.envelope import GENESIS_HASH
from infra.postgres.eventstore import EVENTS_TABLE, PostgresEventStore, datastore_from_dsn
from projections import audit, bulk
from projections.apply import apply_batch
from projections.replay import verify_chains
from tests.helpers import Rec, kafka_conf, sign_doc, trust_of
from tests.integration.test_projection_executors import _connect, schemas
from veritas.bootstrap import bootstrap
from veritas.cli import app

__all__ = ["schemas"]  # the fixture, shared with the executor tests


def design_hash(prev: str, doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k not in ("hash", "key_id", "signature")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + "\n" + text).encode()).hexdigest()


def hand_built(s: Settings, agg: str, versions: int = 2) -> list[bytes]:
    """Events of one aggregate as other code writes them: .000000Z timestamps, floats that jsonb
    would respell (1e+16, -0.0), keys unsorted and spaces after separators."""
    out, prev = [], GENESIS_HASH
    for v in range(1, versions + 1):
        doc: dict[str, Any] = {
            "version": v,
            "aggregate_id": agg,
            "aggregate_type": "Imported",
            "event_id": str(uuid.uuid4()),
            "type": "RecordImported",  # no projection: the audit log keeps it as it is
            "schema_version": 1,
            "occurred_at": f"2026-01-01T00:00:0{v}.000000Z",
            "actor": "importer",
            "correlation_id": "corr",
            "causation_id": f"cmd-{v}",
            "payload": {"flops": 1e16, "delta": -0.0, "note": "é"},
            "prev_hash": prev,
            "envelope_version": 2,
        }
        doc["hash"] = prev = design_hash(prev, doc)
        out.append(json.dumps(sign_doc(s, doc), ensure_ascii=False).encode())
    return out


def test_the_read_models_audit_copy_verifies_from_its_json_text(
    infra: Settings, schemas: tuple[psycopg.Connection, str, str]
) -> None:
    admin, live, rebuilt = schemas
    agg = str(uuid.uuid4())
    recs = [Rec("registry.events", 0, i, raw, []) for i, raw in enumerate(hand_built(infra, agg))]
    with _connect(infra, live) as conn, conn.transaction():
        apply_batch(conn, recs, {}, trust_of(infra))  # type: ignore[arg-type]
    with _connect(infra, rebuilt) as conn:
        fold = bulk.rebuild(conn, iter([recs]), trust_of(infra))  # type: ignore[list-item]
    assert len(fold.chains) == 1
    for schema in (live, rebuilt):
        assert verify_chains(admin, schema) == (1, None)
        v = audit.verify_audit_log(admin, schema)
        assert (v.aggregates, v.events, v.valid) == (1, 2, True)
    admin.execute(
        f"UPDATE {live}.rm_audit_log SET envelope = replace(envelope::text, '00:02.000000Z',"
        " '00:02.000001Z')::json WHERE version = 2".encode()
    )
    checked, brk = verify_chains(admin, live)
    assert checked == 1 and brk is not None
    assert (brk.aggregate_id, brk.version) == (agg, 2) and "hash" in brk.reason


@pytest.fixture
def store_schema(infra: Settings) -> Any:
    schema = f"es_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(infra.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    store = PostgresEventStore(datastore_from_dsn(infra.dsn, schema, pool_size=1))
    store.create_tables()
    yield schema
    store.close()
    with psycopg.connect(infra.dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


def _store_rows(infra: Settings, schema: str, agg: str, states: list[bytes]) -> None:
    with psycopg.connect(infra.dsn, autocommit=True) as conn:
        for v, state in enumerate(states, start=1):
            conn.execute(
                f"INSERT INTO {schema}.{EVENTS_TABLE} (originator_id, originator_version, topic,"
                " state) VALUES (%s, %s, 'registry.events', %s)".encode(),
                (agg, v, state),
            )


def test_the_store_verifies_from_its_stored_bytes(infra: Settings, store_schema: str) -> None:
    agg = str(uuid.uuid4())
    _store_rows(infra, store_schema, agg, hand_built(infra, agg))
    c = bootstrap(infra.model_copy(update={"db_schema": store_schema}))
    v = audit.verify_store(c)
    assert (v.source, v.aggregates, v.events, v.valid) == ("store", 1, 2, True)
    unsigned = str(uuid.uuid4())  # its signatures taken off: refused, and named
    stripped = [
        json.dumps({k: x for k, x in json.loads(raw).items() if k != "signature"}).encode()
        for raw in hand_built(infra, unsigned)
    ]
    _store_rows(infra, store_schema, unsigned, stripped)
    v = audit.verify_store(c)
    assert not v.valid and [(p.aggregate_id, p.version, p.reason) for p in v.refused] == [
        (unsigned, 1, "unsigned"),
        (unsigned, 2, "unsigned"),
    ]
    assert v.refused[0].place.startswith("store#")
    with psycopg.connect(infra.dsn, autocommit=True) as conn:
        conn.execute(
            f"DELETE FROM {store_schema}.{EVENTS_TABLE} WHERE originator_id = %s".encode(),
            (unsigned,),
        )
    other = str(uuid.uuid4())
    first, _ = hand_built(infra, other)
    _store_rows(infra, store_schema, other, [first, b"[" * 5000 + b"]" * 5000])
    brk = audit.verify_store(c).chain_break
    assert brk is not None and (brk.aggregate_id, brk.version) == (other, 2)
    assert "undecodable" in brk.reason


def test_undecodable_records_on_a_topic_are_named_with_their_place_and_reason(
    infra: Settings,
) -> None:
    topic = f"audit.copy.{uuid.uuid4().hex[:6]}"
    admin = AdminClient({**kafka_conf(infra)})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    agg = str(uuid.uuid4())
    first, second = hand_built(infra, agg)
    p = Producer({**kafka_conf(infra)})
    for value in (first, b"\xffnot json", second, b'{"version": 3}'):
        p.produce(topic, key=agg, value=value)
    p.flush(10)
    v = audit.verify_topics(bootstrap(infra), [topic])
    assert (v.aggregates, v.events, v.chain_break, v.undecodable) == (1, 2, None, 2)
    assert not v.valid
    assert v.problems[0].startswith(f"{topic}/0/1: not UTF-8 JSON")
    assert v.problems[1] == f"{topic}/0/3: 'aggregate_type' is missing or not a str"
    out = CliRunner().invoke(app, ["verify", "--no-store", "--topic", topic])
    assert out.exit_code == 1
    assert "2 UNDECODABLE record(s)" in out.output
    assert f"undecodable: {topic}/0/1: not UTF-8 JSON" in out.output
    assert f"undecodable: {topic}/0/3:" in out.output

"""The projector on real Kafka and Postgres: a record that cannot be projected is set aside with
its reason and spoils nothing else, and an event delivered twice takes effect once."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg
from confluent_kafka import Producer

from config.settings import Settings
from projections.replay import replay
from projections.schema import migrate
from tests.helpers import end_offsets, envelope, kafka_conf, producer, publish, read_from, token
from veritas.bootstrap import bootstrap
from workers.projector import Projector


def test_bad_and_duplicate_records_spoil_nothing(stack: Settings) -> None:
    schema = f"rm_t_{uuid.uuid4().hex[:8]}"
    s = stack.model_copy(update={"read_schema": schema})
    name = f"proj-{uuid.uuid4().hex[:6]}"
    start = end_offsets(stack, "registry.events")
    p = producer(stack)
    payload = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
    publish(
        p,
        "registry.commands",
        json.dumps(envelope("RegisterModel", payload, version=2)).encode(),
        token(stack, "alice", "data_scientist"),
        name,
    )
    p.flush(10)
    mine = read_from(stack, start, lambda ms: any(name.encode() in m.value() for m in ms), 30)
    event = next(m for m in mine if name.encode() in m.value())
    junk = Producer({**kafka_conf(stack)})
    garbage = b"not an envelope " + uuid.uuid4().hex.encode()
    junk.produce("monitoring.events", key=b"x", value=garbage)
    junk.produce("monitoring.events", key=event.key(), value=event.value())  # the same event again
    junk.flush(10)

    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        migrate(conn, schema)
    projector = Projector(bootstrap(s), group_id=f"veritas-t-{uuid.uuid4().hex[:6]}")
    try:
        deadline = time.monotonic() + 60
        with psycopg.connect(
            stack.dsn, autocommit=True, options=f"-c search_path={schema}"
        ) as conn:
            while time.monotonic() < deadline:
                projector.step(1000, 0.5)
                errors = conn.execute(
                    "SELECT count(*) FROM rm_projection_errors WHERE raw = %s", (garbage,)
                ).fetchone()[0]  # type: ignore[index]
                models = conn.execute(
                    "SELECT count(*) FROM rm_models WHERE name = %s", (name,)
                ).fetchone()[0]  # type: ignore[index]
                done = conn.execute(
                    "SELECT count(*) FROM rm_projection_positions WHERE topic = 'monitoring.events'"
                ).fetchone()[0]  # type: ignore[index]
                if errors >= 1 and models == 1 and done >= 1:
                    break
            reason = conn.execute(
                "SELECT reason, error FROM rm_projection_errors WHERE raw = %s", (garbage,)
            ).fetchall()
            audit = conn.execute(
                "SELECT count(*) FROM rm_audit_log WHERE envelope->'payload'->>'name' = %s", (name,)
            ).fetchone()[0]  # type: ignore[index]
    finally:
        projector.close()
    assert models == 1
    assert audit == 1  # delivered twice, applied once
    assert reason == [("undecodable", "refused: undecodable")]

    # A history with a record that cannot be projected is rebuilt record by record, and reaches
    # the same read models, the set-aside record included.
    projector = Projector(bootstrap(s), group_id=f"veritas-t-{uuid.uuid4().hex[:6]}")
    try:
        while projector.step(5000, 2.0):
            pass  # the live schema catches up with the whole topics
        report = replay(bootstrap(s), verify=True)
    finally:
        projector.close()
    assert report.mode == "records"
    # The first record the bulk path does not believe sends it to the record path: this test's
    # junk, or an unsigned event an earlier test of the session committed to the store directly.
    assert "undecodable" in report.fallback_reason or "not believed" in report.fallback_reason
    assert report.digests_match and report.switched
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        errors = conn.execute(
            f"SELECT reason FROM {schema}.rm_projection_errors WHERE raw = %s".encode(), (garbage,)
        )
        assert errors.fetchall() == [("undecodable",)]
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
        conn.execute(f"DROP SCHEMA IF EXISTS {schema}_old CASCADE".encode())


def _has(msgs: list[Any], command_id: str, name: str) -> bool:
    """Both the command's result and its event are on Kafka."""
    topics = {
        m.topic() for m in msgs if command_id.encode() in m.value() or name.encode() in m.value()
    }
    return topics == {"events.results", "registry.events"}


def test_replay_verifies_while_the_live_projector_lags(stack: Settings) -> None:
    """The rebuild reads to the end of the topics; a live projector that has not got that far yet
    is caught up under the lock, so the digests compare the same records on both sides."""
    schema = f"rm_t_{uuid.uuid4().hex[:8]}"
    s = stack.model_copy(update={"read_schema": schema})
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        migrate(conn, schema)
    projector = Projector(bootstrap(s), group_id=f"veritas-t-{uuid.uuid4().hex[:6]}")
    try:
        while projector.step(5000, 2.0):
            pass  # the live schema has the whole topics
        name = f"lag-{uuid.uuid4().hex[:6]}"
        start = end_offsets(stack, "events.results") + end_offsets(stack, "registry.events")
        payload = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
        p = producer(stack)
        env = envelope("RegisterModel", payload, version=2)
        publish(
            p,
            "registry.commands",
            json.dumps(env).encode(),
            token(stack, "alice", "data_scientist"),
            name,
        )
        p.flush(10)
        seen = read_from(stack, start, lambda ms: _has(ms, env["command_id"], name), 30)
        assert _has(seen, env["command_id"], name)
        report = replay(bootstrap(s), verify=True)  # the live projector has not seen the command
        assert report.live_caught_up >= 2  # its event and its result, at least
        assert report.digests_match and report.switched, report.differing
        projector.step(5000, 2.0)  # resumes from the swapped schema's positions
    finally:
        projector.close()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT m.name, s.status FROM {schema}.rm_models m, {schema}.rm_command_status s"
            " WHERE m.name = %s AND s.command_id = %s".encode(),
            (name, env["command_id"]),
        ).fetchall()
        assert rows == [(name, "accepted")]
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
        conn.execute(f"DROP SCHEMA IF EXISTS {schema}_old CASCADE".encode())

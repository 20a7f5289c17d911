"""The projector believes only events whose hash, chain position and signature verify, on real
Kafka and Postgres. Forged events on registry.events (a recomputed chain with no signature, a
signature by an unknown key, a bad hash, a downgrade to the unsigned v1 envelope, a validly signed
second event under a version already taken, a key used after its retirement) are quarantined
with their reason and never applied, and the real event that comes after them is applied."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY

from config.settings import Settings
from events.envelope import ENVELOPE_VERSION, EventEnvelope, seal, signed_message, with_signature
from infra import keys
from ml import signing
from projections.schema import migrate
from tests.helpers import end_offsets, envelope, producer, publish, read_from, token
from veritas.bootstrap import bootstrap
from workers.projector import Projector


def _command(s: Settings, ctype: str, payload: dict[str, Any], name: str) -> None:
    p = producer(s)
    tok = token(s, "alice", "data_scientist")
    publish(p, "registry.commands", json.dumps(envelope(ctype, payload)).encode(), tok, name)
    p.flush(10)


def _event_of(s: Settings, start: Any, match: str, etype: str) -> EventEnvelope:
    """The first real (not forged) event of type `etype` whose bytes name `match`."""

    def real(m: Any) -> bool:
        v = m.value()
        return match.encode() in v and f'"type":"{etype}"'.encode() in v and b"mallory" not in v

    msgs = read_from(s, start, lambda ms: any(real(m) for m in ms), 30)
    return EventEnvelope.from_bytes(next(m.value() for m in msgs if real(m)))


def _forge(
    after: EventEnvelope, description: str, *, version: int | None = None, v2: bool = True
) -> EventEnvelope:
    """The next event of `after`'s aggregate (or another one at `version`), its chain recomputed
    by DESIGN's rule, unsigned."""
    body: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "type": "ModelMetadataUpdated",
        "schema_version": 1,
        "aggregate_type": after.aggregate_type,
        "aggregate_id": after.aggregate_id,
        "version": version or after.version + 1,
        "occurred_at": datetime.now(UTC),
        "actor": "mallory",
        "correlation_id": "forged",
        "causation_id": "forged",
        "payload": {"description": description},
        "prev_hash": after.hash if version is None else after.prev_hash,
    }
    if v2:
        body["envelope_version"] = ENVELOPE_VERSION
    return seal(body)


def _signed_by(env: EventEnvelope, key: Ed25519PrivateKey) -> EventEnvelope:
    sig = base64.b64encode(key.sign(signed_message(env.hash))).decode()
    return with_signature(env, signing.key_id(key.public_key()), sig)


def _refused(reason: str) -> float:
    return REGISTRY.get_sample_value("veritas_projection_refused_total", {"reason": reason}) or 0.0


def _project(s: Settings, schema: str, until: Any, timeout_s: float = 60) -> None:
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        migrate(conn, schema)
    projector = Projector(
        bootstrap(s.model_copy(update={"read_schema": schema})),
        group_id=f"veritas-t-{uuid.uuid4().hex}",
    )
    deadline = time.monotonic() + timeout_s
    try:
        with psycopg.connect(s.dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
            while time.monotonic() < deadline and not until(conn):
                projector.step(2000, 0.5)
    finally:
        projector.close()


def _holds(conn: psycopg.Connection, agg: str, believed: int, refused: int) -> bool:
    """The aggregate's events believed and refused by the projector so far are these counts."""
    row = conn.execute("SELECT count(*) FROM rm_audit_log WHERE aggregate_id = %s", (agg,))
    return row.fetchone() == (believed,) and len(_reasons(conn, agg)) == refused


def _reasons(conn: psycopg.Connection, aggregate_id: str) -> list[tuple[str, int | None]]:
    rows = conn.execute(
        "SELECT reason, version FROM rm_projection_errors WHERE aggregate_id = %s"
        " ORDER BY kafka_offset",
        (aggregate_id,),
    ).fetchall()
    return [(str(r), v) for r, v in rows]


def test_forged_events_are_quarantined_and_the_real_one_is_applied(stack: Settings) -> None:
    name = f"trust-{uuid.uuid4().hex[:8]}"
    start = end_offsets(stack, "registry.events")
    meta = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
    _command(stack, "RegisterModel", meta, name)
    real1 = _event_of(stack, start, name, "ModelRegistered")
    agg = str(real1.aggregate_id)
    insider = keys.load(stack)  # the real key: a second event under a version already taken
    forged = [
        _forge(real1, "forged: recomputed chain, unsigned"),
        _signed_by(_forge(real1, "forged: another key"), Ed25519PrivateKey.generate()),
        _forge(real1, "forged: bad hash").model_copy(update={"hash": "f" * 64}),
        _forge(real1, "forged: downgraded to v1", v2=False),
        with_signature(
            _forge(real1, "forged: version 1 again", version=1),
            *insider.sign(signed_message(_forge(real1, "x", version=1).hash)),
        ),
    ]
    # The last one is signed over another event's hash: it must not verify either.
    retaken = _forge(real1, "forged: signed copy of version 1", version=1)
    forged.append(with_signature(retaken, *insider.sign(signed_message(retaken.hash))))
    p = producer(stack)
    for env in forged:
        p.produce("registry.events", key=agg, value=env.to_bytes())
    p.flush(10)
    before = {r: _refused(r) for r in ("unsigned", "unknown_key", "bad_hash")}
    _command(stack, "UpdateModelMetadata", {"name": name, "description": "real"}, name)
    real2 = _event_of(stack, start, agg, "ModelMetadataUpdated")
    assert real2.version == 2 and real2.actor == "alice"

    schema = f"rm_t_{uuid.uuid4().hex[:8]}"

    _project(stack, schema, lambda conn: _holds(conn, agg, 2, len(forged)))
    with psycopg.connect(stack.dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        described = conn.execute(
            "SELECT description FROM rm_models WHERE name = %s", (name,)
        ).fetchone()
        audit = conn.execute(
            "SELECT version, envelope->>'hash' FROM rm_audit_log WHERE aggregate_id = %s"
            " ORDER BY version",
            (agg,),
        ).fetchall()
        reasons = _reasons(conn, agg)
        by_reason = dict(
            conn.execute(
                "SELECT reason, count(*) FROM rm_projection_errors WHERE reason = ANY(%s)"
                " GROUP BY reason",
                (list(before),),
            ).fetchall()
        )
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
    assert described == ("real",)
    assert audit == [(1, real1.hash), (2, real2.hash)]  # the real chain, and nothing else
    assert reasons == [
        ("unsigned", 2),
        ("unknown_key", 2),
        ("bad_hash", 2),
        ("unsigned", 2),
        ("bad_signature", 1),
        ("conflicting_version", 1),
    ]
    # The projector read the whole history (earlier tests may have left refused records too):
    # its counter grew by exactly what its quarantine holds, this test's forgeries among them.
    for reason, n in by_reason.items():
        assert _refused(reason) - before[reason] == n
    assert by_reason["unsigned"] >= 2 and by_reason["unknown_key"] >= 1

    # The stack's own projector quarantined them too: the API lists them, and /ready says so.
    api = httpx.Client(base_url=stack.api_url, timeout=30)
    auth = {"Authorization": f"Bearer {token(stack, 'auditor', 'auditor')}"}
    deadline, listed = time.monotonic() + 30, []
    while time.monotonic() < deadline and len(listed) < len(forged):
        r = api.get("/quarantine", params={"limit": 200}, headers=auth)
        assert r.status_code == 200, r.text
        listed = [i for i in _all_pages(api, auth) if i["aggregate_id"] == agg]
        time.sleep(0.5)
    assert sorted(i["reason"] for i in listed) == sorted(r for r, _ in reasons)
    original = next(i for i in listed if i["reason"] == "unknown_key")
    assert base64.b64decode(original["raw_base64"]) == forged[1].to_bytes()

    def quarantine_line() -> dict[str, Any]:
        ready = api.get("/ready").json()
        return next(c for c in ready["components"] if c["name"] == "projection-errors")

    deadline, line = time.monotonic() + 30, quarantine_line()
    while "unknown_key" not in line["detail"] and time.monotonic() < deadline:
        time.sleep(1)  # the API's health sampler looks every few seconds
        line = quarantine_line()
    assert "unknown_key" in line["detail"] and line["data"]["by_reason"]["unknown_key"] >= 1
    assert api.get("/quarantine", params={"reason": "nonsense"}, headers=auth).status_code == 422


def _all_pages(api: httpx.Client, auth: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 50} | ({"cursor": cursor} if cursor else {})
        page = api.get("/quarantine", params=params, headers=auth).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_after_a_rotation_old_history_verifies_and_a_retired_key_is_refused(
    stack: Settings,
) -> None:
    name = f"rot-{uuid.uuid4().hex[:8]}"
    start = end_offsets(stack, "registry.events")
    meta = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
    _command(stack, "RegisterModel", meta, name)
    old = _event_of(stack, start, name, "ModelRegistered")
    stolen = keys.load(stack)  # the key about to be retired
    old_id, new_id = keys.rotate(stack)
    assert old.key_id == old_id == stolen.key_id != new_id
    late = _forge(old, "signed by the retired key after its retirement")
    late = with_signature(late, *stolen.sign(signed_message(late.hash)))
    p = producer(stack)
    p.produce("registry.events", key=str(old.aggregate_id), value=late.to_bytes())
    p.flush(10)
    _command(stack, "UpdateModelMetadata", {"name": name, "description": "after"}, name)
    new = _event_of(stack, start, str(old.aggregate_id), "ModelMetadataUpdated")
    assert new.key_id == new_id and new.version == 2  # the handler signs with the new key
    agg = str(old.aggregate_id)
    schema = f"rm_t_{uuid.uuid4().hex[:8]}"

    _project(stack, schema, lambda conn: _holds(conn, agg, 2, 1))
    with psycopg.connect(stack.dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        audit = conn.execute(
            "SELECT version, envelope->>'key_id' FROM rm_audit_log WHERE aggregate_id = %s"
            " ORDER BY version",
            (agg,),
        ).fetchall()
        reasons = _reasons(conn, agg)
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
    assert audit == [(1, old_id), (2, new_id)]  # history by the old key still verifies
    assert reasons == [("retired_key", 2)]

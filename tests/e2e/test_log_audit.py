"""Log security on the real stack: events forged onto registry.events (a recomputed chain, unsigned
or signed by a key nobody published, and one with a bad hash), an edit of the event store with a
recomputed chain, and a stored event swapped for a forged one, are each named by aggregate,
version, place and reason, by the log check, the API, `veritas verify`, `veritas audit`,
`veritas replay --verify` and the outside verifier (examples/verify_events.py); the published
keys carry no private material.

Forged records stay on registry.events for good: this module gives the rest of the session a
fresh stack when it is done."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.settings import ROOT, Settings
from domain.registry import model_id
from events.envelope import chain_hash
from infra import keys, supervisor
from ml import signing
from projections import audit
from projections.log_audit import verify_log
from tests.e2e.test_audit_replay import _register, _veritas
from tests.helpers import producer, token
from veritas import services
from veritas.bootstrap import bootstrap

UNHASHED = ("hash", "key_id", "signature")


def _fresh(s: Settings) -> None:
    services.down(s)
    shutil.rmtree(s.var_dir, ignore_errors=True)
    services.up(s)


def _stack_used_later(request: pytest.FixtureRequest) -> bool:
    items = request.session.items
    last = max(i for i, item in enumerate(items) if item.module is request.module)
    return any("stack" in item.fixturenames for item in items[last + 1 :])


@pytest.fixture(scope="module")
def log_stack(stack: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """A stack whose log checks clean. Other tests may have left forged or junk records on the
    topics (they stay for good), and this module's forgeries do: a fresh stack then (after this
    module, only for tests that follow on the same stack)."""
    if not verify_log(bootstrap(stack)).valid:
        _fresh(stack)
    yield stack
    if _stack_used_later(request):
        _fresh(stack)


def _relayed(s: Settings, names: list[str], per: int = 3) -> dict[str, list[Any]]:
    """Each model's events on the topics, once all `per` of each are there."""
    aggs = {str(model_id(n)) for n in names}
    deadline = time.monotonic() + 60
    while True:
        found: dict[str, list[Any]] = {a: [] for a in aggs}
        for e in audit.topic_events(bootstrap(s), ["registry.events"], [], aggs):
            found[e.aggregate_id].append(e)
        if all(len(v) >= per for v in found.values()) or time.monotonic() > deadline:
            assert all(len(v) >= per for v in found.values()), "not relayed in time"
            return found
        time.sleep(0.3)


def _rehash(doc: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k not in UNHASHED}
    return {**doc, "hash": chain_hash(doc["prev_hash"], body)}


def _next(last: dict[str, Any]) -> dict[str, Any]:
    """A v(n+1) after `last`, its chain recomputed, unsigned."""
    doc = {k: v for k, v in last.items() if k not in UNHASHED}
    doc.update(event_id=str(uuid.uuid4()), version=last["version"] + 1, prev_hash=last["hash"])
    doc.update(type="ModelMetadataUpdated", payload={"name": "x", "tags": {"forged": "yes"}})
    return _rehash(doc)


def _forge(s: Settings, heads: dict[str, Any]) -> dict[str, str]:
    """Three forged v4 records, on their aggregates' partitions: unsigned, signed by another key,
    and one with a bad hash. {aggregate_id: the reason expected}."""
    (a, ea), (b, eb), (c, ec) = heads.items()
    unsigned = _next(ea.doc)
    other = Ed25519PrivateKey.generate()
    rekeyed = _next(eb.doc)
    rekeyed.update(
        key_id=signing.key_id(other.public_key()),
        signature=signing.sign(other, b"veritas-event-v2\n" + rekeyed["hash"].encode()),
    )
    bad = {**_next(ec.doc), "actor": "mallory"}  # changed after its hash was computed
    p = producer(s)
    for doc, e in ((unsigned, ea), (rekeyed, eb), (bad, ec)):
        partition = int(e.place.split("/")[1])
        p.produce(
            "registry.events",
            key=doc["aggregate_id"],
            value=json.dumps(doc).encode(),
            partition=partition,
        )
    assert p.flush(30) == 0
    return {a: "unsigned", b: "unknown_key", c: "bad_hash"}


def _dump(s: Settings, path: Path) -> int:
    """Every record value of registry.events as JSON lines, partition by partition."""
    rows = sorted(
        (int(e.place.split("/")[1]), int(e.place.split("/")[2]), json.dumps(e.doc))
        for e in audit.topic_events(bootstrap(s), ["registry.events"], [])
    )
    path.write_text("".join(r[2] + "\n" for r in rows))
    return len(rows)


def _example(keys_json: Path, records: Path) -> subprocess.CompletedProcess[str]:
    with records.open() as f:
        return subprocess.run(
            [sys.executable, str(ROOT / "examples" / "verify_events.py"), str(keys_json)],
            stdin=f,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _auditor(s: Settings) -> dict[str, str]:
    return {"authorization": f"Bearer {token(s, 'audrey', 'auditor')}"}


def test_forged_events_on_the_topic_are_named_everywhere(
    log_stack: Settings, tmp_path: Path
) -> None:
    s = log_stack
    run = uuid.uuid4().hex[:6]
    names = [f"forge-{run}-{i}" for i in range(3)]
    _register(s, names)
    found = _relayed(s, names)
    heads = {a: max(v, key=lambda e: e.version) for a, v in found.items()}
    keys_json = tmp_path / "keys.json"
    keys_json.write_text(httpx.get(f"{s.api_url}/keys", headers=_auditor(s)).text)
    assert _dump(s, tmp_path / "clean.jsonl") >= 9
    before = _example(keys_json, tmp_path / "clean.jsonl")
    assert before.returncode == 0 and before.stdout.startswith("OK "), before.stdout + before.stderr
    assert verify_log(bootstrap(s)).valid

    forged = _forge(s, heads)
    report = verify_log(bootstrap(s))
    refused = {(p.aggregate_id, p.version): p for p in report.kafka.refused.items}
    for agg, reason in forged.items():
        p = refused[(agg, 4)]
        assert p.reason == reason and p.place.startswith("registry.events/")
        assert p.aggregate_type == "RegisteredModel"
    assert report.kafka.refused.count == 3 and report.store.valid
    only = {(p.aggregate_id, p.version) for p in report.comparison.only_in_kafka.items}
    assert only == {(a, 4) for a in forged}
    assert not report.valid and report.comparison.only_in_store.count == 0

    body = httpx.get(f"{s.api_url}/audit/verify", headers=_auditor(s), timeout=120).json()
    assert body["source"] == "log" and body["valid"] is False
    assert {(r["aggregate_id"], r["version"], r["reason"]) for r in body["refused"]} == {
        (a, 4, why) for a, why in forged.items()
    }
    assert {(r["aggregate_id"], r["place"]) for r in body["only_in_kafka"]} == {
        (a, refused[(a, 4)].place) for a in forged
    }
    assert body["counts"]["only_in_kafka"] == 3

    cli = _veritas("verify")
    assert cli.returncode == 1
    for agg, reason in forged.items():
        line = f"refused in kafka: RegisteredModel {agg} version 4 at {refused[(agg, 4)].place}: {reason}"
        assert line in cli.stdout, cli.stdout

    _dump(s, tmp_path / "forged.jsonl")
    after = _example(keys_json, tmp_path / "forged.jsonl")
    assert after.returncode == 1
    assert sorted(line.split(": ", 1)[1] for line in after.stdout.splitlines()) == sorted(
        f"RegisteredModel {a} v4: {why}" for a, why in forged.items()
    )

    # The read model may have projected a forgery: the trail, verified from the store, names it.
    a = next(iter(forged))
    trail = httpx.get(f"{s.api_url}/audit/RegisteredModel/{a}", headers=_auditor(s)).json()
    assert trail["source"] == "store" and trail["chain_valid"] is True
    assert [e["version"] for e in trail["events"]] == [1, 2, 3]
    with psycopg.connect(s.dsn) as conn:
        shown = conn.execute(
            "SELECT count(*) FROM veritas_rm.rm_audit_log WHERE aggregate_id = %s AND version = 4",
            (a,),
        ).fetchone()
    if shown and shown[0]:
        assert [(x["version"], x["reason"]) for x in trail["read_model_extra"]] == [
            (4, "not_in_store")
        ]
        assert trail["read_model_matches"] is False

    replay = _veritas("replay", "--verify")
    # It fails and names them, though it swaps: the rebuild quarantined them.
    assert replay.returncode == 1 and "log check        : NOT VALID" in replay.stdout
    for agg, reason in forged.items():
        assert f"RegisteredModel {agg} version 4 at registry.events/" in replay.stdout
        assert f": {reason}" in replay.stdout


def _store_edit(s: Settings, agg: str) -> list[tuple[int, bytes]]:
    """Edit version 2's payload and recompute the chain after it (signatures kept). Returns the
    original rows."""
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT originator_version, state FROM veritas_events WHERE originator_id = %s"
            " ORDER BY originator_version",
            (agg,),
        ).fetchall()
        docs = [json.loads(bytes(state)) for _, state in rows]
        docs[1]["payload"]["tags"] = {"t0": "edited"}
        for i in range(1, len(docs)):
            docs[i] = _rehash({**docs[i], "prev_hash": docs[i - 1]["hash"]})
            conn.execute(
                "UPDATE veritas_events SET state = %s WHERE originator_id = %s"
                " AND originator_version = %s",
                (json.dumps(docs[i]).encode(), agg, i + 1),
            )
    return [(int(v), bytes(state)) for v, state in rows]


def test_an_edit_of_the_store_with_a_recomputed_chain_is_named(log_stack: Settings) -> None:
    s = log_stack
    name = f"edit-{uuid.uuid4().hex[:6]}"
    _register(s, [name])
    agg = str(model_id(name))
    _relayed(s, [name])
    original = _store_edit(s, agg)
    try:
        report = verify_log(bootstrap(s), [agg])
        assert [(p.version, p.reason) for p in report.store.refused.items] == [
            (2, "bad_signature"),
            (3, "bad_signature"),
        ]
        assert all(p.place.startswith("store#") for p in report.store.refused.items)
        sides = {
            (p.version, p.place.split("#")[0].split("/")[0])
            for p in report.comparison.conflicting.items
        }
        assert sides == {(2, "store"), (3, "store"), (2, "registry.events"), (3, "registry.events")}

        trail = httpx.get(f"{s.api_url}/audit/RegisteredModel/{agg}", headers=_auditor(s)).json()
        assert trail["chain_valid"] is False
        assert [(r["version"], r["reason"]) for r in trail["refused"]] == [
            (2, "bad_signature"),
            (3, "bad_signature"),
        ]
        assert [(r["version"], r["reason"]) for r in trail["read_model_extra"]] == [
            (2, "not_in_store"),
            (3, "not_in_store"),
        ]

        out = _veritas("audit", name)
        assert out.returncode == 1 and "hash chains NOT VERIFIED" in out.stdout
        assert f"refused in store: RegisteredModel {agg} version 2 at store#" in out.stdout
        assert f"conflicting: RegisteredModel {agg} version 3 at registry.events/" in out.stdout
    finally:
        with psycopg.connect(s.dsn, autocommit=True) as conn:
            for v, state in original:
                conn.execute(
                    "UPDATE veritas_events SET state = %s WHERE originator_id = %s"
                    " AND originator_version = %s",
                    (state, agg, v),
                )
    out = _veritas("audit", name)
    assert out.returncode == 0 and "hash chains verified" in out.stdout, out.stdout


def test_events_the_relay_has_not_published_are_not_yet_relayed(log_stack: Settings) -> None:
    s = log_stack
    name = f"lag-{uuid.uuid4().hex[:6]}"
    supervisor.stop(s, "relay")
    try:
        _register(s, [name])
        agg = str(model_id(name))
        deadline = time.monotonic() + 60
        with psycopg.connect(s.dsn) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM veritas_events WHERE originator_id = %s", (agg,)
                ).fetchone()
                if row and row[0] == 3:
                    break
                time.sleep(0.2)
        report = verify_log(bootstrap(s), [agg])
        assert report.comparison.not_yet_relayed == 3
        assert report.comparison.only_in_store.count == 0 and report.valid
    finally:
        services.start_service(s, "relay")
    _relayed(s, [name])
    assert verify_log(bootstrap(s), [agg]).comparison.not_yet_relayed == 0


def _private_body(s: Settings) -> str:
    pem = (s.keys_dir / keys.ACTIVE_FILE).read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert len(body) > 40
    base64.b64decode(body)
    return body


def test_keys_are_published_without_private_material(log_stack: Settings) -> None:
    s = log_stack
    private = _private_body(s)
    r = httpx.get(f"{s.api_url}/keys", headers=_auditor(s))
    assert r.status_code == 200 and private not in r.text
    published = r.json()["keys"]
    active = keys.load(s).key_id
    assert [k["key_id"] for k in published if k["retired_at"] is None] == [active]
    assert set(published[0]) == {
        "key_id",
        "algorithm",
        "public_key_pem",
        "created_at",
        "retired_at",
    }
    ds = {"authorization": f"Bearer {token(s, 'alice', 'data_scientist')}"}
    assert httpx.get(f"{s.api_url}/keys", headers=ds).status_code == 403

    listed = _veritas("keys")
    assert listed.returncode == 0 and f"{active}  Ed25519" in listed.stdout
    assert private not in listed.stdout + listed.stderr
    rotated = _veritas("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = keys.load(s).key_id
    assert rotated.stdout.split() == ["retired", active, "active", new] and new != active
    for text in (rotated.stdout + rotated.stderr, _veritas("keys").stdout):
        assert private not in text and _private_body(s) not in text
    after = httpx.get(f"{s.api_url}/keys", headers=_auditor(s)).json()["keys"]
    assert {k["key_id"]: k["retired_at"] is not None for k in after} == {active: True, new: False}


def test_an_event_swapped_into_the_stores_history_is_only_in_the_store(
    log_stack: Settings,
) -> None:
    """An attacker with the database deletes one stored event and writes a forged event of a new
    aggregate at its notification id, below the relay's position: neither is "not yet relayed"."""
    s = log_stack
    name = f"swap-{uuid.uuid4().hex[:6]}"
    _register(s, [name])
    agg = str(model_id(name))
    _relayed(s, [name])
    intruder, key = str(uuid.uuid4()), Ed25519PrivateKey.generate()
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        (nid, state) = conn.execute(
            "SELECT notification_id, state FROM veritas_events WHERE originator_id = %s"
            " AND originator_version = 3",
            (agg,),
        ).fetchone()  # type: ignore[misc]
        doc = json.loads(bytes(state))
        forged = _rehash(
            {k: v for k, v in doc.items() if k not in UNHASHED}
            | {"aggregate_id": intruder, "version": 1, "prev_hash": "0" * 64}
        )
        forged["key_id"] = signing.key_id(key.public_key())
        forged["signature"] = signing.sign(key, b"veritas-event-v2\n" + forged["hash"].encode())
        conn.execute("DELETE FROM veritas_events WHERE notification_id = %s", (nid,))
        conn.execute(
            "INSERT INTO veritas_events (notification_id, originator_id, originator_version,"
            " topic, state) VALUES (%s, %s, 1, 'registry.events', %s)",
            (nid, intruder, json.dumps(forged).encode()),
        )
        try:
            report = verify_log(bootstrap(s), [agg, intruder])
            assert [
                (p.aggregate_id, p.version, p.place) for p in report.comparison.only_in_store.items
            ] == [(intruder, 1, f"store#{nid}")]
            assert [(p.aggregate_id, p.version) for p in report.comparison.only_in_kafka.items] == [
                (agg, 3)
            ]
            assert [(p.aggregate_id, p.reason) for p in report.store.refused.items] == [
                (intruder, "unknown_key")
            ]
            assert report.comparison.not_yet_relayed == 0 and nid <= report.relayed_upto
            cli = _veritas("verify")
            assert cli.returncode == 1
            assert (
                f"only in the store: RegisteredModel {intruder} version 1 at store#{nid}"
                in cli.stdout
            )
            assert (
                f"only on kafka: RegisteredModel {agg} version 3 at registry.events/" in cli.stdout
            )
        finally:
            conn.execute("DELETE FROM veritas_events WHERE notification_id = %s", (nid,))
            conn.execute(
                "INSERT INTO veritas_events (notification_id, originator_id, originator_version,"
                " topic, state) VALUES (%s, %s, 3, 'registry.events', %s)",
                (nid, agg, state),
            )
    assert verify_log(bootstrap(s), [agg]).valid

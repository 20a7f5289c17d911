"""Guarantee 5 and the audit trail on the real stack: a projector killed mid-batch and restarted
reaches the same read model as a rebuild from offset 0, and tampering is found and located."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from config.settings import Settings
from domain.registry import model_id
from projections import audit
from projections.replay import replay
from tests.helpers import envelope, kafka_conf, producer, publish, token
from veritas import services
from veritas.bootstrap import bootstrap


def _register(s: Settings, names: list[str], updates: int = 2) -> None:
    tok, p = token(s, "alice", "data_scientist"), producer(s)
    for name in names:
        payload = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
        publish(
            p,
            "registry.commands",
            json.dumps(envelope("RegisterModel", payload, version=2)).encode(),
            tok,
            name,
        )
        for i in range(updates):
            env = envelope("UpdateModelMetadata", {"name": name, "tags": {f"t{i}": "x"}})
            publish(p, "registry.commands", json.dumps(env).encode(), tok, name)
    assert p.flush(30) == 0


def _count(s: Settings, query: str, *params: Any) -> int:
    with psycopg.connect(s.dsn) as conn:
        row = conn.execute(query.encode(), params).fetchone()
        return int(row[0]) if row else 0


def test_projector_killed_mid_batch_reaches_the_same_digest_as_a_rebuild(stack: Settings) -> None:
    rng = random.Random(7)
    run = f"pk-{uuid.uuid4().hex[:6]}"
    names = [f"{run}-{i}" for i in range(1500)]
    # Sent in chunks with a kill after each, so the kills land while the projector has work
    # however fast the stack is.
    kills = 0
    for start in range(0, len(names), 300):
        _register(stack, names[start : start + 300])
        time.sleep(rng.uniform(0.05, 0.4))
        if (
            _count(
                stack, "SELECT count(*) FROM veritas_rm.rm_models WHERE name LIKE %s", f"{run}-%"
            )
            < start + 300
        ):
            services.kill_service(stack, "projector")
            kills += 1
            services.start_service(stack, "projector")  # the supervisor restarts it by itself
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        projected = _count(
            stack, "SELECT count(*) FROM veritas_rm.rm_models WHERE name LIKE %s", f"{run}-%"
        )
        if projected == len(names):
            break
        time.sleep(0.3)
    assert kills >= 2, "the projector was never killed while it had work"
    tags = _count(
        stack,
        "SELECT count(*) FROM veritas_rm.rm_models WHERE name LIKE %s AND tags ? 't1'",
        f"{run}-%",
    )
    assert tags == len(names)  # every update applied, none lost
    report = replay(bootstrap(stack), verify=True)
    assert report.chain_break is None
    assert report.rebuilt_digest == report.live_digest, report.differing
    assert report.switched
    # After the swap the live projector follows the new schema: new work still shows up.
    _register(stack, [f"{run}-after"], updates=0)
    hdr = {"authorization": f"Bearer {token(stack, 'alice', 'data_scientist')}"}
    for _ in range(100):
        if httpx.get(f"{stack.api_url}/models/{run}-after", headers=hdr).status_code == 200:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("projector did not follow the swapped read models")


def _veritas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veritas.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_tampered_event_in_the_store_is_found_and_located(stack: Settings) -> None:
    name = f"tamper-{uuid.uuid4().hex[:6]}"
    _register(stack, [name])
    agg = model_id(name)
    for _ in range(100):
        if _count(stack, "SELECT count(*) FROM veritas_events WHERE originator_id = %s", agg) == 3:
            break
        time.sleep(0.1)
    auditor = {"authorization": f"Bearer {token(stack, 'audrey', 'auditor')}"}
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        (original,) = conn.execute(
            "SELECT state FROM veritas_events WHERE originator_id = %s AND originator_version = 2",
            (agg,),
        ).fetchone()  # type: ignore[misc]
        forged = bytes(original).replace(b'"t0":"x"', b'"t0":"y"')
        assert forged != bytes(original)
        conn.execute(
            "UPDATE veritas_events SET state = %s WHERE originator_id = %s AND originator_version = 2",
            (forged, agg),
        )
        try:
            v = audit.verify_store(bootstrap(stack))
            assert not v.valid and v.chain_break is not None
            assert (v.chain_break.aggregate_id, v.chain_break.version) == (str(agg), 2)
            body = httpx.get(
                f"{stack.api_url}/audit/verify",
                params={"source": "store"},
                headers=auditor,
                timeout=60,
            ).json()
            assert body["valid"] is False
            assert (
                body["chain_break"]["aggregate_id"] == str(agg)
                and body["chain_break"]["version"] == 2
            )
            cli = _veritas("verify", "--store")
            assert cli.returncode == 1 and str(agg) in cli.stdout and "version 2" in cli.stdout
        finally:
            conn.execute(
                "UPDATE veritas_events SET state = %s WHERE originator_id = %s AND originator_version = 2",
                (original, agg),
            )
    assert audit.verify_store(bootstrap(stack)).valid


def test_tampered_event_in_a_copied_topic_is_found_and_located(stack: Settings) -> None:
    name = f"copy-{uuid.uuid4().hex[:6]}"
    _register(stack, [name])
    agg = str(model_id(name))
    copy = f"audit.copy.{uuid.uuid4().hex[:6]}"
    admin = AdminClient({**kafka_conf(stack)})
    admin.create_topics([NewTopic(copy, 1, 1)])[copy].result()
    c = Consumer(
        {
            **kafka_conf(stack),
            "group.id": f"t-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    parts = c.list_topics("registry.events").topics["registry.events"].partitions
    mine = 0
    deadline = time.monotonic() + 60
    while mine < 3 and time.monotonic() < deadline:  # wait until the model's 3 events are relayed
        time.sleep(0.2)
        v = audit.read_topics(bootstrap(stack), ["registry.events"])
        mine = len(v.get(agg, []))
    c.assign([TopicPartition("registry.events", p, 0) for p in parts])
    out = Producer({**kafka_conf(stack)})
    copied, tampered = 0, False
    records: list[Any] = []
    while batch := [m for m in c.consume(1000, 1.0) if not m.error()]:
        records += batch
    c.close()
    records.sort(key=lambda m: (m.partition(), m.offset()))
    for m in records:
        value = m.value()
        env = json.loads(value)
        if env["aggregate_id"] == agg and env["version"] == 2:
            env["payload"]["tags"] = {"t0": "forged"}
            value, tampered = json.dumps(env).encode(), True
        out.produce(copy, key=m.key(), value=value)
        copied += 1
    out.flush(10)
    assert tampered and copied >= 3
    v = audit.verify_topics(bootstrap(stack), [copy])
    assert v.chain_break is not None
    assert (v.chain_break.aggregate_id, v.chain_break.version) == (agg, 2)
    auditor = {"authorization": f"Bearer {token(stack, 'audrey', 'auditor')}"}
    body = httpx.get(
        f"{stack.api_url}/audit/verify",
        params={"source": "topics", "topic": copy},
        headers=auditor,
        timeout=60,
    ).json()
    assert body["valid"] is False and body["chain_break"]["version"] == 2
    cli = _veritas("verify", "--no-store", "--topic", copy)
    assert cli.returncode == 1 and agg in cli.stdout and "version 2" in cli.stdout
    assert audit.verify_topics(bootstrap(stack), ["registry.events"]).valid

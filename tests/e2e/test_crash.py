"""Guarantees 1, 2 and 4 under crashes: kill -9 either command-handler instance, both, or the relay
at random points of a 10,000-command run, restart them, and prove nothing was lost or doubled."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict

import psycopg
import pytest

from config.settings import Settings
from events.envelope import EventEnvelope, verify_chain
from tests.helpers import end_offsets, envelope, producer, publish, read_from, results_for, token
from veritas import services


@pytest.mark.timeout(900)
def test_kill_handler_and_relay_mid_run_loses_and_doubles_nothing(stack: Settings) -> None:
    rng = random.Random(20261127)
    run = uuid.uuid4().hex[:8]
    tok = token(stack, "alice", "data_scientist")
    res_start, ev_start = (
        end_offsets(stack, "events.results"),
        end_offsets(stack, "registry.events"),
    )
    p = producer(stack)
    shared = [f"crash-{run}-shared-{k}" for k in range(50)]
    sent: list[str] = []

    def send(ctype: str, payload: dict[str, object], key: str, version: int = 1) -> None:
        env = envelope(ctype, payload, version=version)
        sent.append(env["command_id"])
        publish(p, "registry.commands", json.dumps(env).encode(), tok, key=key)

    base = _count(stack, "SELECT count(*) FROM veritas_command_results")
    for name in shared:
        send(
            "RegisterModel",
            {"name": name, "description": "d", "intended_use": "u", "limitations": "l"},
            name,
            2,
        )
    p.flush(10)

    def send_chunk(chunk: int) -> None:
        for i in range(995):
            if i % 5 == 0:  # multi-event aggregates: chains must stay whole across crashes
                name = shared[(chunk * 995 + i) % len(shared)]
                send("UpdateModelMetadata", {"name": name, "tags": {f"c{chunk}i{i}": "x"}}, name)
            else:
                name = f"crash-{run}-{chunk}-{i}"
                send(
                    "RegisterModel",
                    {"name": name, "description": "d", "intended_use": "u", "limitations": "l"},
                    name,
                    2,
                )
        assert p.flush(30) == 0

    # The run is sent in ten chunks with a kill after each (and two more at the end), at random
    # moments, so that the kills land while batches are in flight however fast the stack is.
    mid_run_kills = 0
    for step in range(12):
        if step < 10:
            send_chunk(step)
        time.sleep(rng.uniform(0.05, 0.6))
        done = _count(stack, "SELECT count(*) FROM veritas_command_results")
        relayed = _relay_position(stack)
        victims = rng.choice(
            [
                ["command-handler"],
                ["command-handler-1"],
                ["relay"],
                ["command-handler", "relay"],
                ["command-handler", "command-handler-1", "relay"],
            ]
        )
        for v in victims:
            services.kill_service(stack, v)
        mid_run_kills += int(
            done < len(sent) + base
            or relayed < _count(stack, "SELECT max(notification_id) FROM veritas_events")
        )
        time.sleep(rng.uniform(0.0, 0.3))
        for v in victims:
            services.start_service(stack, v)
        services.wait_healthy(stack, victims)
    assert len(sent) == 10_000
    assert mid_run_kills >= 3, "the kills did not land while work was in flight"

    found = results_for(stack, res_start, sent, timeout_s=300)
    assert set(found) == set(sent), f"{len(set(sent) - set(found))} commands lost"
    assert all(len(v) == 1 for v in found.values()), "a command has two results on events.results"
    assert all(v[0]["status"] == "accepted" for v in found.values())
    expected_events = {e["event_id"] for v in found.values() for e in v[0]["events"]}
    assert len(expected_events) == 10_000

    seen_ids: set[str] = set()

    def all_there(msgs: list[object]) -> bool:
        for m in msgs[len(scanned) :]:
            seen_ids.add(json.loads(m.value())["event_id"])  # type: ignore[attr-defined]
        scanned[:] = msgs
        return expected_events <= seen_ids

    scanned: list[object] = []

    msgs = read_from(stack, ev_start, all_there, timeout_s=300)
    time.sleep(2)
    msgs += read_from(
        stack,
        [type(tp)(tp.topic, tp.partition, tp.offset) for tp in _after(msgs, ev_start)],
        lambda _: False,
        timeout_s=3,
    )  # anything doubled would show up right behind
    streams: dict[str, list[EventEnvelope]] = defaultdict(list)
    for m in msgs:
        env = EventEnvelope.from_bytes(m.value())
        if env.event_id.__str__() in expected_events:
            streams[str(env.aggregate_id)].append(env)
    on_kafka = [e for s in streams.values() for e in s]
    assert len(on_kafka) == len({str(e.event_id) for e in on_kafka}) == 10_000  # exactly once
    for stream in streams.values():
        assert verify_chain(stream) is None  # per-aggregate order and hash chain intact
    assert len(streams[_id(shared[0])]) > 1


def _id(name: str) -> str:
    from domain.registry import model_id

    return str(model_id(name))


def _after(msgs: list[object], start: list[object]) -> list[object]:
    last = {(tp.topic, tp.partition): tp.offset for tp in start}  # type: ignore[attr-defined]
    for m in msgs:
        key = (m.topic(), m.partition())  # type: ignore[attr-defined]
        last[key] = max(last[key], m.offset() + 1)  # type: ignore[attr-defined]
    return [type(start[0])(t, p, o) for (t, p), o in last.items()]


def _count(s: Settings, query: str) -> int:
    with psycopg.connect(s.dsn) as conn:
        row = conn.execute(query.encode()).fetchone()
        return int(row[0] or 0) if row else 0


def _relay_position(s: Settings) -> int:
    from infra.kafka import relay_position

    return relay_position(s, timeout_s=10)

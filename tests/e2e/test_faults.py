"""Recovery without a human, on the real stack under its supervisor: kill -9 one handler, the relay,
the projector, the broker or the Postgres postmaster while a stream of commands flows. The
component comes back by itself, every command ends with exactly one result or dead letter, nothing
is doubled, the rebuilt read models match the live ones, and /ready is 200 again. The recovery
times are written to var/<test dir>/recovery.json (the README's table comes from there)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from config.settings import Settings
from domain.registry import model_id
from infra import supervisor
from projections.replay import replay
from tests.helpers import (
    end_offsets,
    envelope,
    kafka_conf,
    producer,
    publish,
    read_from,
    results_for,
    token,
)
from veritas import services
from veritas.bootstrap import bootstrap

STREAM = 2400  # commands per run: valid registrations, rejections and poison, interleaved
RATE = 200.0  # per second, so the run lasts ~12 s and the kill lands in its first third
VICTIMS = ["command-handler-1", "relay", "projector", "kafka", "postgres"]


def _stream(s: Settings, run: str, sent: list[tuple[str, str]], started: threading.Event) -> None:
    """Publish STREAM messages; `sent` gets (kind, command_id or marker) for each."""
    tok, p = token(s, "alice", "data_scientist"), producer(s)
    for i in range(STREAM):
        name = f"{run}-{i}"
        if i % 10 == 7:  # poison: no envelope at all
            marker = f"poison-{run}-{i}"
            publish(p, "registry.commands", b"{" + marker.encode(), tok, name)
            sent.append(("dead", marker))
        else:
            payload = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
            if i % 10 == 3:
                del payload["limitations"]  # rejected: schema_violation
            env = envelope("RegisterModel", payload, version=2)
            publish(p, "registry.commands", json.dumps(env).encode(), tok, name)
            sent.append(("accepted" if i % 10 != 3 else "rejected", env["command_id"]))
        if i == STREAM // 4:
            started.set()
        p.poll(0)
        time.sleep(1 / RATE)
    assert p.flush(120) == 0


def _ready(s: Settings) -> int:
    try:
        return httpx.get(f"{s.api_url}/ready", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _outcomes(
    s: Settings, starts: dict[str, Any], sent: list[tuple[str, str]]
) -> dict[str, list[Any]]:
    ids = {cid for kind, cid in sent if kind != "dead"}
    markers = {m for kind, m in sent if kind == "dead"}
    results: dict[str, list[Any]] = {}

    def results_done(msgs: list[Any]) -> bool:
        results.clear()
        for m in msgs:
            r = json.loads(m.value())
            if r["command_id"] in ids:
                results.setdefault(r["command_id"], []).append(r)
        return set(results) == ids

    read_from(s, starts["events.results"], results_done, timeout_s=180)
    dead: dict[str, list[Any]] = {}

    def dead_done(msgs: list[Any]) -> bool:
        dead.clear()
        for m in msgs:
            marker = (m.value() or b"")[1:].decode(errors="replace")
            if marker in markers:
                dead.setdefault(marker, []).append(m)
        return set(dead) == markers

    read_from(s, starts["commands.dlq"], dead_done, timeout_s=60)
    return {**results, **dead}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("victim", VICTIMS)
def test_a_component_killed_mid_stream_comes_back_and_nothing_is_lost(
    stack: Settings, victim: str
) -> None:
    s = stack
    run = f"f{victim[:4]}-{uuid.uuid4().hex[:5]}"
    starts = {t: end_offsets(s, t) for t in ("events.results", "commands.dlq", "registry.events")}
    sent: list[tuple[str, str]] = []
    started = threading.Event()
    sender = threading.Thread(target=_stream, args=(s, run, sent, started), daemon=True)
    sender.start()
    assert started.wait(60)
    old_pid = supervisor.info(s, victim).pid
    assert services.kill_service(s, victim) == old_pid
    killed_at = time.monotonic()
    not_ready_seen, restarted_s = False, None
    while True:  # until the supervisor has it running again and /ready says 200
        code = _ready(s)
        not_ready_seen |= code != 200
        info = supervisor.info(s, victim)
        back = info.state == "RUNNING" and info.pid != old_pid
        if back and restarted_s is None:
            restarted_s = time.monotonic() - killed_at
        if back and code == 200:
            break
        assert time.monotonic() - killed_at < 180, f"{victim} not back: {info}, /ready {code}"
        time.sleep(0.2)
    recovered_s = time.monotonic() - killed_at
    sender.join(300)
    outcomes = _outcomes(s, starts, sent)
    # Every message ends exactly once: accepted, rejected with a reason, or dead-lettered.
    assert len(outcomes) == len(sent) == STREAM
    doubled = [k for k, v in outcomes.items() if len(v) > 1]
    assert doubled == []
    want = Counter(kind for kind, _ in sent)
    got = Counter(
        "dead" if not isinstance(v[0], dict) else v[0]["status"] for v in outcomes.values()
    )
    assert got == want, (got, want)
    # Each accepted registration's event is on Kafka once.
    accepted = {str(model_id(f"{run}-{i}")) for i in range(STREAM) if i % 10 not in (3, 7)}
    events: Counter[str] = Counter()

    def all_events(msgs: list[Any]) -> bool:
        events.clear()
        events.update(a for m in msgs if (a := json.loads(m.value())["aggregate_id"]) in accepted)
        return set(events) == accepted

    read_from(s, starts["registry.events"], all_events, timeout_s=120)
    assert set(events) == accepted and max(events.values()) == 1
    report = replay(bootstrap(s), verify=True)
    assert report.chain_break is None
    assert report.rebuilt_digest == report.live_digest, report.differing
    _record(s, victim, restarted_s or 0.0, recovered_s, not_ready_seen)


def _record(s: Settings, victim: str, restarted_s: float, ready_s: float, seen: bool) -> None:
    path = s.var_dir / "recovery.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[victim] = {
        "restarted_s": round(restarted_s, 1),  # the supervisor has it RUNNING again
        "ready_s": round(ready_s, 1),  # and /ready is 200 (caught up, nothing stalled)
        "ready_503_seen": seen,
    }
    path.write_text(json.dumps(data, indent=2))
    print(f"{victim}: restarted after {restarted_s:.1f}s, /ready 200 after {ready_s:.1f}s")


def test_a_stopped_component_makes_ready_503_and_status_names_it(stack: Settings) -> None:
    s = stack
    supervisor.stop(s, "relay")
    try:
        deadline = time.monotonic() + 60
        while _ready(s) != 503:
            assert time.monotonic() < deadline, "/ready stayed 200 with the relay stopped"
            time.sleep(0.3)
        body = httpx.get(f"{s.api_url}/ready", timeout=10).json()
        assert "process:relay down" in body["detail"]
        named = {c.name: c for c in services.status(s)}
        assert not named["relay"].healthy and named["relay"].status == "down"
    finally:
        services.start_service(s, "relay")
    services.wait_healthy(s, ["relay"])
    deadline = time.monotonic() + 60
    while _ready(s) != 200:
        assert time.monotonic() < deadline, "/ready did not come back"
        time.sleep(0.3)


def test_work_without_progress_is_stalled_and_named(stack: Settings) -> None:
    s = stack
    handlers = [n for n in services.service_pids(s) if n.startswith("command-handler")]
    pids = [services.service_pid(s, n) for n in handlers]
    tok, p = token(s, "alice", "data_scientist"), producer(s)
    start = end_offsets(s, "events.results")
    for pid in pids:
        os.kill(pid or 0, signal.SIGSTOP)  # alive to the supervisor, but doing nothing
    ids = []
    try:
        for i in range(30):
            name = f"stall-{uuid.uuid4().hex[:6]}-{i}"
            payload = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
            env = envelope("RegisterModel", payload, version=2)
            ids.append(env["command_id"])
            publish(p, "registry.commands", json.dumps(env).encode(), tok, name)
        assert p.flush(30) == 0
        deadline = time.monotonic() + 90
        while "command-handlers stalled" not in httpx.get(f"{s.api_url}/ready", timeout=10).text:
            assert time.monotonic() < deadline, "the stalled handlers were never reported"
            time.sleep(0.5)
        named = {c.name: c for c in services.status(s)}
        assert named["command-handlers"].status == "stalled"
        assert "no progress" in named["command-handlers"].detail
    finally:
        for pid in pids:
            os.kill(pid or 0, signal.SIGCONT)
    found = results_for(s, start, ids, timeout_s=120)
    assert set(found) == set(ids) and all(len(v) == 1 for v in found.values())
    deadline = time.monotonic() + 90
    while _ready(s) != 200:
        assert time.monotonic() < deadline, "/ready did not come back after the stall"
        time.sleep(0.5)


def _members(s: Settings) -> list[Any]:
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    admin = AdminClient({**kafka_conf(s)})
    group = admin.describe_consumer_groups(["veritas-command-handler"])["veritas-command-handler"]
    return list(group.result(timeout=10).members)


def test_a_handler_stopped_with_sigterm_leaves_its_group_at_once(stack: Settings) -> None:
    s = stack
    deadline = time.monotonic() + 60
    while len(_members(s)) != 2:  # both instances in the group
        assert time.monotonic() < deadline
        time.sleep(0.5)
    supervisor.stop(s, "command-handler-1")  # SIGTERM, waits for the process to end
    try:
        # Left at once: not still a member until its session (kafka_session_timeout_ms) runs out.
        assert len(_members(s)) == 1
        wanted = {("registry.commands", p) for p in range(s.topic_partitions)}
        deadline = time.monotonic() + 30
        while True:  # the other instance takes its partitions over
            members = _members(s)
            owned = {(tp.topic, tp.partition) for tp in members[0].assignment.topic_partitions}
            if wanted <= owned:
                break
            assert time.monotonic() < deadline, owned
            time.sleep(0.3)
    finally:
        services.start_service(s, "command-handler-1")
    services.wait_healthy(s, ["command-handler-1"])

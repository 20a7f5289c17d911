"""Two command-handler instances share the command topics' partitions (one consumer group, each its
own transactional id). Updates of one model sent under different keys land on both instances, so
they race on one aggregate: the event store's optimistic concurrency must apply each update once or
report it as a conflict, and never lose or double one."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from config.services import handler_name, metrics_port
from config.settings import Settings
from domain.registry import model_id
from events.envelope import EventEnvelope, verify_chain
from tests.helpers import end_offsets, envelope, producer, publish, read_from, results_for, token
from veritas.bootstrap import bootstrap

INSTANCES = [handler_name(i) for i in range(2)]


def _count(s: Settings, name: str, metric: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port(s, name)}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith(f"{metric}_count"))
    return float(line.split()[-1])


METRICS = ("veritas_command_batch_seconds", "veritas_command_commit_seconds")


def test_two_handlers_share_the_partitions_and_race_on_one_aggregate_safely(
    stack: Settings,
) -> None:
    assert stack.command_handlers == 2
    tok = token(stack, "alice", "data_scientist")
    name = f"scale-{uuid.uuid4().hex[:8]}"
    res_start = end_offsets(stack, "events.results")
    ev_start = end_offsets(stack, "registry.events")
    p = producer(stack)
    reg = envelope(
        "RegisterModel",
        {"name": name, "description": "d", "intended_use": "u", "limitations": "l"},
        version=2,
    )
    publish(p, "registry.commands", json.dumps(reg).encode(), tok, key=name)
    p.flush(10)
    assert results_for(stack, res_start, [reg["command_id"]])[reg["command_id"]][0]["status"] == (
        "accepted"
    )
    before = {(n, m): _count(stack, n, m) for n in INSTANCES for m in METRICS}

    updates = [
        envelope("UpdateModelMetadata", {"name": name, "tags": {f"k{i}": "v"}}) for i in range(200)
    ]
    for i, u in enumerate(updates):  # keys spread the updates over every partition
        publish(p, "registry.commands", json.dumps(u).encode(), tok, key=f"{name}-{i}")
        if i % 20 == 0:
            p.flush(10)
            time.sleep(0.02)
    assert p.flush(10) == 0

    found = results_for(stack, res_start, [u["command_id"] for u in updates], timeout_s=120)
    assert len(found) == len(updates) and all(len(v) == 1 for v in found.values())
    outcome = {cid: v[0] for cid, v in found.items()}
    accepted = [u for u in updates if outcome[u["command_id"]]["status"] == "accepted"]
    refused = [u for u in updates if outcome[u["command_id"]]["status"] != "accepted"]
    assert all(outcome[u["command_id"]]["reason_code"] == "conflict" for u in refused)
    assert len(accepted) + len(refused) == len(updates)
    assert len(accepted) >= len(updates) // 2
    for n, m in before:  # both instances handled and committed batches of this run
        assert _count(stack, n, m) > before[(n, m)], (n, m)

    c = bootstrap(stack)
    try:
        stream = c.store.load(model_id(name))
    finally:
        c.close()
    assert [e.version for e in stream] == list(range(1, len(accepted) + 2))
    tags: dict[str, str] = {}
    for e in stream[1:]:
        tags.update(e.payload["tags"])
    assert tags == {k: "v" for u in accepted for k in u["payload"]["tags"]}

    agg = str(model_id(name))
    expected = {e["event_id"] for u in accepted for e in outcome[u["command_id"]]["events"]}

    def ours(msgs: list[object]) -> list[EventEnvelope]:
        envs = [EventEnvelope.from_bytes(m.value()) for m in msgs]  # type: ignore[attr-defined]
        return [e for e in envs if str(e.aggregate_id) == agg]

    msgs = read_from(
        stack, ev_start, lambda ms: {str(e.event_id) for e in ours(ms)} >= expected, 120
    )
    on_kafka = ours(msgs)
    assert [e.version for e in on_kafka] == list(range(1, len(accepted) + 2))  # once, in order
    assert verify_chain(on_kafka) is None

"""Dead letters keep their original whole, whatever its size: one the broker took compressed is
copied to commands.dlq as it was (up to dlq_max_bytes), and a larger one is kept in Postgres with
a reference in the dead letter. Neither stops its partition: a command behind it is accepted."""

from __future__ import annotations

import json
import uuid
from typing import Any

from confluent_kafka import Producer

from config.settings import Settings
from tests.helpers import end_offsets, envelope, kafka_conf, read_from, results_for, token
from veritas.bootstrap import bootstrap


def _send(s: Settings, value: bytes, tok: str, key: str) -> None:
    p = Producer(
        {
            **kafka_conf(s),
            "compression.type": "lz4",  # the broker checks the compressed size
            "message.max.bytes": 32 * 1024 * 1024,
        }
    )
    p.produce(
        "registry.commands", key=key, value=value, headers=[("authorization", f"Bearer {tok}")]
    )
    assert p.flush(30) == 0


def _canary(s: Settings, tok: str, key: str) -> dict[str, Any]:
    name = f"canary-{uuid.uuid4().hex[:6]}"
    payload = {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}
    env = envelope("RegisterModel", payload, version=2)
    _send(s, json.dumps(env).encode(), tok, key)
    return env


def _dead_letter(s: Settings, start: Any, marker: bytes) -> Any:
    found: list[Any] = []

    def done(msgs: list[Any]) -> bool:
        found[:] = [m for m in msgs if (m.value() or b"").startswith(marker)]
        return bool(found)

    read_from(s, start, done, timeout_s=60)
    assert len(found) == 1, found
    return found[0]


def test_an_oversized_command_compressed_on_the_wire_is_dead_lettered_whole(
    stack: Settings,
) -> None:
    s, tok, key = stack, token(stack, "alice", "data_scientist"), f"big-{uuid.uuid4().hex[:6]}"
    marker = f'{{"command_id":"big-{uuid.uuid4().hex[:8]}",'.encode()
    original = marker + b'"pad":"' + b"x" * 1_000_000 + b'"}'
    dlq, results = end_offsets(s, "commands.dlq"), end_offsets(s, "events.results")
    _send(s, original, tok, key)
    canary = _canary(s, tok, key)  # same key: same partition, behind the big one
    letter = _dead_letter(s, dlq, marker)
    headers = dict(letter.headers())
    assert headers["dlq.reason"] == b"too_large"
    assert letter.value() == original  # whole
    assert "authorization" not in headers
    got = results_for(s, results, [canary["command_id"]], timeout_s=60)
    assert got[canary["command_id"]][0]["status"] == "accepted"


def test_an_original_too_large_for_the_dead_letter_topic_is_kept_in_postgres(
    stack: Settings,
) -> None:
    s, tok, key = stack, token(stack, "alice", "data_scientist"), f"huge-{uuid.uuid4().hex[:6]}"
    marker = f'{{"command_id":"huge-{uuid.uuid4().hex[:8]}",'.encode()
    original = marker + b'"pad":"' + b"y" * (s.dlq_max_bytes + 1_000_000) + b'"}'
    dlq, results = end_offsets(s, "commands.dlq"), end_offsets(s, "events.results")
    _send(s, original, tok, key)
    canary = _canary(s, tok, key)
    found: list[Any] = []

    def done(msgs: list[Any]) -> bool:
        found[:] = [m for m in msgs if dict(m.headers() or []).get("dlq.original")]
        return bool(found)

    read_from(s, dlq, done, timeout_s=60)
    assert len(found) == 1
    headers = dict(found[0].headers())
    assert headers["dlq.reason"] == b"too_large"
    assert int(headers["dlq.original_bytes"]) == len(original)
    where, _, digest = headers["dlq.original"].decode().rpartition("/")
    assert where == "postgres:veritas_dead_letter_originals"
    c = bootstrap(s)
    try:
        assert c.store.parked_original(digest) == original
    finally:
        c.close()
    got = results_for(s, results, [canary["command_id"]], timeout_s=60)
    assert got[canary["command_id"]][0]["status"] == "accepted"

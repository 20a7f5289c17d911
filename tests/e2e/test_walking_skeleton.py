"""Foundation acceptance: a plain Kafka client registers a model that the API then serves, and bad
input gets a clear answer without stopping the handler."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import httpx
from confluent_kafka import Producer

from config.settings import Settings
from tests.helpers import end_offsets, kafka_conf, read_from, results_for, token


def _register_payload(name: str) -> dict[str, str]:
    return {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}


def test_plain_kafka_client_registers_a_model_visible_in_api_within_5s(stack: Settings) -> None:
    # Nothing from the project: a raw confluent-kafka producer and DESIGN's envelope.
    name = f"skeleton-{uuid.uuid4().hex[:8]}"
    tok = token(stack, "alice", "data_scientist")
    env = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterModel",
        "schema_version": 2,
        "issued_at": datetime.now(UTC).isoformat(),
        "payload": _register_payload(name),
    }
    p = Producer({**kafka_conf(stack)})
    t0 = time.monotonic()
    p.produce(
        "registry.commands",
        key=name,
        value=json.dumps(env).encode(),
        headers=[("authorization", f"Bearer {tok}".encode())],
    )
    p.flush(5)
    body = None
    with httpx.Client(base_url=stack.api_url, headers={"authorization": f"Bearer {tok}"}) as api:
        while time.monotonic() - t0 < 5.0:
            r = api.get(f"/models/{name}")
            if r.status_code == 200:
                body = r.json()
                break
            time.sleep(0.05)
    assert body is not None, "model not visible at GET /models/{name} within 5 s"
    assert body["owner"] == "alice"
    assert body["intended_use"] == "u"


def test_bad_input_gets_clear_answers_and_the_handler_keeps_going(stack: Settings) -> None:
    tok = token(stack, "alice", "data_scientist")
    res_start = end_offsets(stack, "events.results")
    dlq_start = end_offsets(stack, "commands.dlq")
    p = Producer({**kafka_conf(stack)})
    junk = b"{this is not json" + uuid.uuid4().hex.encode()
    p.produce(
        "registry.commands",
        key=b"junk",
        value=junk,
        headers=[("authorization", f"Bearer {tok}".encode())],
    )
    no_token = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterModel",
        "schema_version": 2,
        "issued_at": datetime.now(UTC).isoformat(),
        "payload": _register_payload("x-" + uuid.uuid4().hex[:6]),
    }
    p.produce("registry.commands", value=json.dumps(no_token).encode())
    missing = {
        **no_token,
        "command_id": str(uuid.uuid4()),
        "payload": {"name": "y-" + uuid.uuid4().hex[:6]},
    }
    p.produce(
        "registry.commands",
        value=json.dumps(missing).encode(),
        headers=[("authorization", f"Bearer {tok}".encode())],
    )
    good_name = "after-bad-" + uuid.uuid4().hex[:6]
    good = {**no_token, "command_id": str(uuid.uuid4()), "payload": _register_payload(good_name)}
    p.produce(
        "registry.commands",
        value=json.dumps(good).encode(),
        headers=[("authorization", f"Bearer {tok}".encode())],
    )
    p.flush(5)

    found = results_for(
        stack, res_start, [no_token["command_id"], missing["command_id"], good["command_id"]]
    )
    assert found[no_token["command_id"]][0]["reason_code"] == "unauthenticated"
    assert found[missing["command_id"]][0]["reason_code"] == "schema_violation"
    assert "description" in found[missing["command_id"]][0]["message"]
    assert found[good["command_id"]][0]["status"] == "accepted"

    dead = read_from(stack, dlq_start, lambda ms: any(m.value() == junk for m in ms), 30)
    letter = next(m for m in dead if m.value() == junk)
    headers = dict(letter.headers())
    assert headers["dlq.reason"] == b"invalid_json"
    assert "authorization" not in headers  # secrets never copied

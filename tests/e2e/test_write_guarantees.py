"""Write-side guarantees on the real stack: idempotency (2), accounting of every message (1)."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import jwt

from config.settings import Settings
from tests.helpers import end_offsets, envelope, producer, publish, read_from, results_for, token


def _reg(name: str) -> dict[str, str]:
    return {"name": name, "description": "d", "intended_use": "u", "limitations": "l"}


def test_same_command_id_three_times_gives_one_event_and_identical_results(stack: Settings) -> None:
    tok = token(stack, "alice", "data_scientist")
    name = f"idem-{uuid.uuid4().hex[:8]}"
    env = envelope("RegisterModel", _reg(name), version=2)
    res_start, ev_start = (
        end_offsets(stack, "events.results"),
        end_offsets(stack, "registry.events"),
    )
    p = producer(stack)
    for _ in range(3):
        publish(p, "registry.commands", json.dumps(env).encode(), tok, key=name)
        p.flush(5)
        time.sleep(0.3)  # separate batches, not just one batch with three copies
    found = results_for(stack, res_start, [env["command_id"]])
    deadline = time.monotonic() + 30
    while len(found.get(env["command_id"], [])) < 3 and time.monotonic() < deadline:
        found = results_for(stack, res_start, [env["command_id"]], timeout_s=2)
    results = found[env["command_id"]]
    assert len(results) == 3
    assert results[0] == results[1] == results[2]
    assert results[0]["status"] == "accepted"
    events = read_from(stack, ev_start, lambda ms: False, timeout_s=3)
    mine = [
        json.loads(m.value())
        for m in events
        if json.loads(m.value())["payload"].get("name") == name
    ]
    assert len(mine) == 1
    assert mine[0]["event_id"] == results[0]["events"][0]["event_id"]


def test_ten_thousand_mixed_commands_are_all_accounted_for(stack: Settings) -> None:
    run = uuid.uuid4().hex[:8]
    ds, appr, approver = (
        token(stack, "alice", "data_scientist"),
        token(stack, "ann", "approver"),
        token(stack, "dave", "data_scientist", "approver"),
    )
    expired = jwt.encode(
        {"sub": "alice", "roles": ["data_scientist"], "exp": int(time.time()) - 60},
        stack.jwt_secret.get_secret_value(),
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": "alice", "roles": ["admin"], "exp": int(time.time()) + 600},
        "not-the-secret-" * 4,
        algorithm="HS256",
    )
    res_start, dlq_start = (
        end_offsets(stack, "events.results"),
        end_offsets(stack, "commands.dlq"),
    )
    p = producer(stack)

    # A submission by dave, so that dave approving it is a self-approval.
    model = f"acct-{run}"
    setup = [
        ("RegisterModel", _reg(model), 2),
        (
            "RegisterModelVersion",
            {
                "model_name": model,
                "version": "1.0.0",
                "artifact": {"uri": "file://m", "sha256": "a" * 64, "signature": "s"},
            },
            1,
        ),
        (
            "SubmitForApproval",
            {
                "model_name": model,
                "version": "1.0.0",
                "target_stage": "production",
                "justification": "j",
            },
            1,
        ),
    ]
    setup_ids = []
    for ctype, payload, v in setup:
        e = envelope(ctype, payload, version=v)
        setup_ids.append(e["command_id"])
        topic = "governance.commands" if ctype == "SubmitForApproval" else "registry.commands"
        publish(p, topic, json.dumps(e).encode(), approver, key=model)
        p.flush(5)
        r = results_for(stack, res_start, [e["command_id"]])[e["command_id"]][0]
        assert r["status"] == "accepted", r
    submission_id = r["events"][0]["aggregate_id"]

    expected: dict[str, str] = {}  # command_id -> "accepted" or reason_code
    junk: set[bytes] = set()
    kinds = [
        "valid",
        "valid",
        "valid",
        "invalid_json",
        "unknown_type",
        "schema_violation",
        "no_token",
        "expired",
        "forged",
        "forbidden",
        "self_approval",
        "not_found",
        "too_deep",
        "nan",
        "wrong_topic",
        "poison_deep",
    ]
    n = 10_000
    for i in range(n):
        kind = kinds[i % len(kinds)]
        name = f"acct-{run}-{i}"
        env = envelope("RegisterModel", _reg(name), version=2)
        topic, tok, want = "registry.commands", ds, "accepted"
        if kind in ("invalid_json", "poison_deep"):
            raw = f"{{not json {run} {i}".encode()
            if kind == "poison_deep":  # beyond the JSON parser: a dead letter, never a stuck batch
                raw = json.dumps({**env, "payload": f"<{i}>"}).encode()
                raw = raw.replace(f'"<{i}>"'.encode(), b"[" * 5000 + b"]" * 5000)
            junk.add(raw)
            publish(p, topic, raw, ds)
            continue
        value: bytes | None = None
        if kind == "unknown_type":
            env["type"], want = "FrobnicateModel", "unknown_type"
        elif kind == "schema_violation":
            env["payload"], want = {"name": name}, "schema_violation"
        elif kind in ("no_token", "expired", "forged"):
            tok, want = (
                {"no_token": None, "expired": expired, "forged": forged}[kind],
                "unauthenticated",
            )
        elif kind == "forbidden":
            tok, want = appr, "forbidden"
        elif kind == "self_approval":
            env = envelope("ApproveSubmission", {"submission_id": submission_id})
            topic, tok, want = "governance.commands", approver, "invariant_violation"
        elif kind == "not_found":
            env = envelope(
                "UpdateModelMetadata", {"name": f"missing-{run}-{i}", "description": "x"}
            )
            want = "not_found"
        elif kind == "too_deep":
            tags: object = "v"
            for _ in range(100):
                tags = {"t": tags}
            env["payload"]["tags"], want = tags, "too_deep"
        elif kind == "nan":
            env["payload"]["tags"], want = {"t": "<nan>"}, "schema_violation"
            value = json.dumps(env).encode().replace(b'"<nan>"', b"NaN")
        elif kind == "wrong_topic":
            topic, want = "governance.commands", "wrong_topic"
        expected[env["command_id"]] = want
        publish(p, topic, value or json.dumps(env).encode(), tok, key=name)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0

    found = results_for(stack, res_start, expected, timeout_s=240)
    dead = read_from(
        stack, dlq_start, lambda ms: len({m.value() for m in ms} & junk) == len(junk), 120
    )
    dead_mine = [m for m in dead if m.value() in junk]
    assert set(found) == set(expected), f"{len(set(expected) - set(found))} commands have no result"
    assert all(len(v) == 1 for v in found.values()), "a command got more than one result"
    assert len(dead_mine) == len(junk)
    assert len(found) + len(dead_mine) == n  # every message sent ends in exactly one outcome
    got = Counter()
    for cid, want in expected.items():
        r = found[cid][0]
        outcome = "accepted" if r["status"] == "accepted" else r["reason_code"]
        assert outcome == want, (cid, r)
        if want == "invariant_violation":
            assert r["sub_code"] == "self_approval"
        got[outcome] += 1
    assert got["accepted"] == sum(1 for i in range(n) if kinds[i % len(kinds)] == "valid")
    reasons = Counter(dict(m.headers())["dlq.reason"] for m in dead_mine)
    assert reasons == {
        b"invalid_json": sum(1 for i in range(n) if kinds[i % len(kinds)] == "invalid_json"),
        b"too_deep": sum(1 for i in range(n) if kinds[i % len(kinds)] == "poison_deep"),
    }

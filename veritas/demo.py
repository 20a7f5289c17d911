"""`veritas demo`: the whole current system, end to end, on a running local stack."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import Producer

from config.settings import Settings
from domain.registry import model_id
from infra import kafka
from infra.auth import issue_token
from projections.replay import replay
from veritas import demo_monitoring, demo_serving, demo_training
from veritas.bootstrap import bootstrap
from veritas.client import ResultWatcher, envelope, send


def _denied(p: Producer) -> str:
    """The error a client principal gets writing an event topic (the audit log)."""
    errors: list[str] = []
    p.produce(
        "registry.events",
        value=b"forged",
        on_delivery=lambda err, _m: errors.append(err.name() if err else "written"),
    )
    p.flush(10)
    return errors[0] if errors else "no answer"


def _step(title: str) -> None:
    print(f"\n== {title}")


def _post(api: httpx.Client, token: str, ctype: str, payload: dict[str, Any]) -> dict[str, Any]:
    r = api.post(
        "/commands",
        params={"wait": "true"},
        json={"type": ctype, "payload": payload},
        headers={"authorization": f"Bearer {token}"},
    )
    body: dict[str, Any] = r.json()
    outcome = body.get("status")
    extra = (
        f" ({body.get('reason_code')}/{body.get('sub_code')}: {body.get('message')})"
        if outcome == "rejected"
        else ""
    )
    print(f"   {ctype:<22} -> {outcome}{extra}")
    return body


def run(s: Settings) -> int:
    c = bootstrap(s)
    tok = {
        who: issue_token(s, who, roles)
        for who, roles in {
            "alice": ["data_scientist"],
            "dave": ["data_scientist", "approver"],
            "bob": ["approver"],
            "carol": ["approver"],
            "olga": ["ml_engineer"],
            "audrey": ["auditor"],
        }.items()
    }
    name = f"iris-classifier-{uuid.uuid4().hex[:6]}"
    api = httpx.Client(base_url=s.api_url, timeout=20)
    ok = True

    _step("1. A plain Kafka client publishes RegisterModel to registry.commands")
    env = envelope(
        "RegisterModel",
        {
            "name": name,
            "description": "Iris species classifier",
            "intended_use": "Teaching and demos",
            "limitations": "150 samples only",
        },
    )
    watcher = ResultWatcher(c)
    t0 = time.monotonic()
    send(c, tok["alice"], env, key=name)
    result = watcher.wait(env["command_id"])
    print(f"   result on events.results: {json.dumps(result)}")
    model = None
    while time.monotonic() - t0 < 10:
        r = api.get(f"/models/{name}", headers={"authorization": f"Bearer {tok['alice']}"})
        if r.status_code == 200:
            model = r.json()
            break
        time.sleep(0.05)
    print(
        f"   GET /models/{name} after {time.monotonic() - t0:.2f}s: owner={model and model['owner']}"
    )
    ok &= model is not None

    _step("2. Bad input gets a clear answer and stops nothing")
    # What `veritas client-config` prints: any Kafka client signs in as `client` with it.
    bad = Producer(kafka.client_config(c.settings, principal="client"))
    bad.produce("registry.commands", key=b"x", value=b"{not json")
    bad.flush(5)
    print("   malformed bytes (a plain Kafka client, `veritas client-config`)")
    print("                   -> commands.dlq with header dlq.reason=invalid_json")
    denied = _denied(bad)
    print(f"   the same client writing registry.events -> {denied} (only the relay may)")
    env2 = envelope("RegisterModel", {"name": name + "-x"})
    send(c, "", env2)
    print(f"   no token        -> {watcher.wait(env2['command_id'])}")
    watcher.close()

    _step("3. Governance: dataset, version with lineage, two distinct approvers, promotion")
    data = b"iris.csv from scikit-learn"
    checksum = hashlib.sha256(data).hexdigest()
    _post(
        api,
        tok["alice"],
        "RegisterDataset",
        {
            "name": "iris",
            "version": "1.0.0",
            "uri": "sklearn://datasets/iris",
            "checksum": checksum,
        },
    )
    _post(
        api,
        tok["alice"],
        "RegisterModelVersion",
        {
            "model_name": name,
            "version": "1.0.0",
            "artifact": {
                "uri": f"file://var/artifacts/{name}/1.0.0.pt",
                "sha256": hashlib.sha256(b"w").hexdigest(),
                "signature": "demo-signature",
            },
            "lineage": {
                "dataset": {"name": "iris", "version": "1.0.0", "checksum": checksum},
                "training_config": {"epochs": 50, "lr": 0.01},
                "code_revision": "demo",
            },
            "metrics": {"accuracy": 0.96},
        },
    )
    _post(
        api,
        tok["olga"],
        "TransitionStage",
        {"model_name": name, "version": "1.0.0", "stage": "production"},
    )
    sub = _post(
        api,
        tok["dave"],
        "SubmitForApproval",
        {
            "model_name": name,
            "version": "1.0.0",
            "target_stage": "production",
            "justification": "accuracy 0.96 on held-out data",
        },
    )
    sub_id = next(e["aggregate_id"] for e in sub["events"])
    _post(api, tok["dave"], "ApproveSubmission", {"submission_id": sub_id})
    _post(api, tok["bob"], "ApproveSubmission", {"submission_id": sub_id, "comments": "looks good"})
    _post(api, tok["bob"], "ApproveSubmission", {"submission_id": sub_id})
    _post(api, tok["carol"], "ApproveSubmission", {"submission_id": sub_id})
    before_promotion = datetime.now(UTC)
    promoted = _post(
        api,
        tok["olga"],
        "TransitionStage",
        {"model_name": name, "version": "1.0.0", "stage": "production"},
    )
    ok &= promoted.get("status") == "accepted"
    model = api.get(f"/models/{name}", headers={"authorization": f"Bearer {tok['alice']}"}).json()
    print(f"   GET /models/{name}: production_version={model['production_version']}")

    _step("4. Point in time: the same model as it stood before the promotion")
    hdr = {"authorization": f"Bearer {tok['alice']}"}
    then = api.get(
        f"/models/{name}", params={"as_of": before_promotion.isoformat()}, headers=hdr
    ).json()
    approvals = [a["approvers"] for v in then["versions"] for a in v["approvals"]]
    print(
        f"   as_of {before_promotion:%H:%M:%S.%f}: production_version={then['production_version']}, "
        f"stages={[(v['version'], v['stage']) for v in then['versions']]}, approved by {approvals}"
    )
    r = api.get(f"/models/{name}", params={"as_of": "2020-01-01T00:00:00Z"}, headers=hdr)
    print(f"   as_of 2020-01-01: HTTP {r.status_code} ({r.json()['detail']})")
    ok &= then["production_version"] is None and r.status_code == 404

    _step("5. Audit: the model's events, verified from the event store (hashes, chain, signatures)")
    r = api.get(
        f"/audit/RegisteredModel/{model_id(name)}",
        headers={"authorization": f"Bearer {tok['audrey']}"},
    )
    trail = r.json()
    print(
        f"   {len(trail['events'])} events, chain_valid={trail['chain_valid']}: "
        + ", ".join(e["type"] for e in trail["events"])
    )
    ok &= bool(trail["chain_valid"])

    _step("6. Replay: rebuild every read model from offset 0 beside the live one, verify, swap")
    report = replay(c, verify=True)
    print(
        f"   {report.records} records in {report.seconds:.1f}s; {report.chains_checked} hash chains "
        f"verified; digest {report.rebuilt_digest} "
        f"{'matches' if report.digests_match else 'DIFFERS from'} the live read models; "
        f"log check (store vs topics, signatures) {'valid' if report.log and report.log.valid else 'NOT VALID'}; "
        f"switched={report.switched}"
    )
    ok &= report.switched and report.verified

    trained, name, version = demo_training.run(api, _post, tok)
    ok &= trained
    if trained:
        if s.serving_enabled:  # before monitoring, which retrains (a new version) on drift
            ok &= demo_serving.run(s, api, _post, tok, name, version)
        ok &= demo_monitoring.run(api, _post, tok, name, version)
    print("\ndemo " + ("succeeded" if ok else "FAILED"))
    c.close()
    return 0 if ok else 1

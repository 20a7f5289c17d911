"""The demo's serving part (needs serving: settings.serving_enabled, the default): a prediction
from the promoted version through Kafka, a canary of a second version promoted by the deployment
saga on its measured error rate and p95 latency, and a rollback that puts the first version back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

from config.settings import Settings
from infra import kafka
from veritas.cli_serving import predict_once

Post = Callable[[httpx.Client, str, str, dict[str, Any]], dict[str, Any]]
# The first digit of sklearn's digits (a 0), 8x8 pixels.
ROW = [
    *(0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0),
    *(0.0, 0.0, 13.0, 15.0, 10.0, 15.0, 5.0, 0.0),
    *(0.0, 3.0, 15.0, 2.0, 0.0, 11.0, 8.0, 0.0),
    *(0.0, 4.0, 12.0, 0.0, 0.0, 8.0, 8.0, 0.0),
    *(0.0, 5.0, 8.0, 0.0, 0.0, 9.0, 8.0, 0.0),
    *(0.0, 4.0, 11.0, 0.0, 1.0, 12.0, 7.0, 0.0),
    *(0.0, 2.0, 14.0, 5.0, 10.0, 12.0, 0.0, 0.0),
    *(0.0, 0.0, 6.0, 13.0, 10.0, 0.0, 0.0, 0.0),
]


def _deployment(api: httpx.Client, hdr: dict[str, str], name: str) -> dict[str, Any]:
    r = api.get(f"/deployments/{name}", headers=hdr)
    return r.json() if r.status_code == 200 else {}


def _wait(
    api: httpx.Client, hdr: dict[str, str], name: str, check: Any, timeout_s: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    d: dict[str, Any] = {}
    while time.monotonic() < deadline:
        d = _deployment(api, hdr, name)
        if d and check(d):
            break
        time.sleep(0.5)
    return d


def _stream(s: Settings, name: str, stop: threading.Event) -> None:
    """50 requests/s for the canary to be measured on."""
    p = Producer(kafka.client_config(s, principal="client", **{"linger.ms": 5}))
    i = 0
    while not stop.is_set():
        rid = f"demo-{uuid.uuid4().hex[:8]}-{i}"
        p.produce("inference.requests", orjson.dumps({"request_id": rid, "model_name": name, "features": ROW}), rid.encode())  # fmt: skip
        i += 1
        p.poll(0)
        time.sleep(0.02)
    p.flush(10)


def _second_version(
    api: httpx.Client, post: Post, tok: dict[str, str], name: str, version: str
) -> str:
    """The production version's signed artifact registered again as a patch (a rebuild)."""
    hdr = {"authorization": f"Bearer {tok['alice']}"}
    v = api.get(f"/models/{name}/versions/{version}", headers=hdr).json()
    major, minor, patch = (int(x) for x in version.split("."))
    new = f"{major}.{minor}.{patch + 1}"
    post(api, tok["alice"], "RegisterModelVersion", {"model_name": name, "version": new, "artifact": v["artifact"], "lineage": {"parent_version": version}})  # fmt: skip
    sub = post(api, tok["alice"], "SubmitForApproval", {"model_name": name, "version": new, "target_stage": "production", "justification": "rebuild"})  # fmt: skip
    sub_id = next(e["aggregate_id"] for e in sub["events"])
    post(api, tok["bob"], "ApproveSubmission", {"submission_id": sub_id})
    post(api, tok["carol"], "ApproveSubmission", {"submission_id": sub_id})
    return new


def run(
    s: Settings, api: httpx.Client, post: Post, tok: dict[str, str], name: str, version: str
) -> bool:
    hdr = {"authorization": f"Bearer {tok['alice']}"}
    print("\n== 9a. Serving: the promoted version answers inference.requests (Ray Serve)")
    d = _wait(api, hdr, name, lambda x: x["production_version"] == version)
    result = predict_once(s, name, ROW)
    print(f"   veritas predict {name}: {result}")
    ok = bool(result) and result.get("model_version") == version  # type: ignore[union-attr]

    print("== 9b. A canary (20% of requests by sha256(request_id)) promoted by the saga")
    new = _second_version(api, post, tok, name, version)
    stop = threading.Event()
    feeder = threading.Thread(target=_stream, args=(s, name, stop))
    feeder.start()
    try:
        post(api, tok["olga"], "StartDeployment", {"model_name": name, "version": new, "canary_share": 0.2, "min_canary_requests": 50})  # fmt: skip
        d = _wait(api, hdr, name, lambda x: x["status"] != "canary" and x["rollout_version"] == new)
    finally:
        stop.set()
        feeder.join()
    decision = d.get("decision") or {}
    print(
        f"   {d.get('status')}: canary {(d.get('measured') or {}).get('canary')}, stable "
        f"{(d.get('measured') or {}).get('stable')}; error rate increase "
        f"{decision.get('error_rate', {}).get('increase')}, p95 {decision.get('p95_latency', {}).get('canary_ms')}"
        f" ms vs limit {decision.get('p95_latency', {}).get('limit_ms')} ms"
    )
    d = _wait(api, hdr, name, lambda x: x["production_version"] == new)
    print(f"   serving production {d.get('production_version')} (was {version}), no canary")
    ok &= d.get("production_version") == new

    print("== 9c. Rollback: RollbackProduction in the registry, and serving follows its event")
    post(api, tok["olga"], "RollbackProduction", {"model_name": name, "reason": "demo rollback"})
    d = _wait(api, hdr, name, lambda x: x["production_version"] == version)
    result = predict_once(s, name, ROW)
    print(f"   serving production {d.get('production_version')} again; a prediction: {result}")
    ok &= bool(result) and result.get("model_version") == version  # type: ignore[union-attr]
    return ok

"""The demo's monitoring part: shifted traffic for the production version, produced onto
inference.requests/results as the serving replicas would; the drift monitor detects it, keeps
Evidently's HTML report, and the policy (retrain_on: critical) starts one retraining whose
version's lineage names the drift event."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import numpy as np
import orjson
from confluent_kafka import Producer
from sklearn.datasets import load_digits

from config.settings import Settings
from infra import kafka
from veritas.demo_training import Post


def _serve_shifted(s: Settings, name: str, version: str, rows: int = 200) -> None:
    X = np.clip(16 - load_digits().data[:rows], 0, 16)  # inverted digits: a strong shift
    # The demo plays the serving replicas here (requests in, results out): their principal.
    p = Producer(kafka.client_config(s, principal="service"))
    for row in X:
        rid = str(uuid.uuid4())
        req = {"request_id": rid, "model_name": name, "features": [float(v) for v in row]}
        res = {"request_id": rid, "model_name": name, "model_version": version,
               "prediction": 0, "confidence": 0.5, "latency_ms": 1.0, "correlation_id": rid}  # fmt: skip
        p.produce("inference.requests", key=rid.encode(), value=orjson.dumps(req))
        p.produce("inference.results", key=rid.encode(), value=orjson.dumps(res))
    p.flush(30)


def _poll(fn: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(1.0)
    return None


def run(api: httpx.Client, post: Post, tok: dict[str, str], name: str, version: str) -> bool:
    s = Settings()
    hdr = {"authorization": f"Bearer {tok['alice']}"}
    print("\n== 9. Monitoring: shifted traffic is detected, reported and starts one retraining")
    policy = {"retrain_on": "critical", "cooldown_s": 3600}
    post(api, tok["olga"], "SetMonitoringPolicy", {"model_name": name, "policy": policy})
    _serve_shifted(s, name, version)
    params = {"model": name, "severity": "critical"}
    found = _poll(
        lambda: api.get("/monitoring/drift", params=params, headers=hdr).json()["items"], 180
    )
    if not found:
        print("   no drift detected in time")
        return False
    c = found[0]
    print(f"   DriftDetected {c['severity']}: score {c['score']:.2f}, {len(c['drifted'])} features")
    print(f"   Evidently report: {s.api_url}{c['report_url']}")
    runs = _poll(
        lambda: [
            r
            for r in api.get("/training/runs", params={"model": name}, headers=hdr).json()["items"]
            if (r.get("trigger") or {}).get("drift_event_id") == c["detected_event_id"]
        ],
        60,
    )
    if not runs:
        print("   no retraining started")
        return False
    print(f"   retraining run {runs[0]['run_id']} started by drift event {c['detected_event_id']}")
    return True

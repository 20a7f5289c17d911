"""The drift monitor on the real stack (Kafka, Postgres, the faust monitor, Evidently, the
training saga): a served stream of digits, produced onto inference.requests/results as the
serving replicas would, for a real trained version with its reference profile. One scenario, in
order, to keep the suite lean: 40 same-distribution windows with a kill -9 of the monitor in the
middle, a mild shift, a strong shift that retrains once under the policy (its worker killed -9
at the first critical window), feedback that makes accuracy fall, and a stop with a window open."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from confluent_kafka import Producer
from sklearn.datasets import load_digits

from config.settings import Settings
from domain.monitoring import monitor_id
from events.envelope import EventEnvelope
from infra import kafka, supervisor
from ml.drift import DriftChecker
from ml.store import ArtifactStore
from tests import training_support as t
from veritas import services
from veritas.bootstrap import bootstrap
from workers.monitor_state import load_version

pytestmark = pytest.mark.timeout(900)
W = 200


def _produce(s: Settings, name: str, version: str, X: np.ndarray, y: np.ndarray) -> list[str]:
    # The serving replicas' part (requests in, results out): the service principal's.
    p = Producer(kafka.client_config(s, principal="service", **{"linger.ms": 5}))
    ids = []
    for row, label in zip(X, y, strict=True):
        rid = str(uuid.uuid4())
        ids.append(rid)
        req = {"request_id": rid, "model_name": name, "features": [float(v) for v in row]}
        res = {"request_id": rid, "model_name": name, "model_version": version,
               "prediction": int(label), "confidence": 0.9, "latency_ms": 1.0,
               "correlation_id": rid}  # fmt: skip
        p.produce("inference.requests", key=rid.encode(), value=orjson.dumps(req))
        p.produce("inference.results", key=rid.encode(), value=orjson.dumps(res))
        p.poll(0)
    p.flush(30)
    return ids


def _events(s: Settings, name: str) -> list[EventEnvelope]:
    return t.stream(s, str(monitor_id(name)))


def _wait_windows(s: Settings, name: str, n: int, timeout_s: float = 300) -> list[EventEnvelope]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        checked = [e for e in _events(s, name) if e.type == "DriftChecked"]
        if len(checked) >= n:
            return checked
        time.sleep(0.5)
    raise AssertionError(f"{len(checked)} of {n} windows checked")


def _evidently(s: Settings, name: str, X: np.ndarray) -> Any:
    """Evidently's own verdict on the same frame, with the same reference and configuration."""
    c = bootstrap(s)
    try:
        from domain.monitoring import DEFAULTS

        info = load_version(c.store, ArtifactStore(s.artifacts_dir), name, "1.0.0", DEFAULTS)
    finally:
        c.close()
    assert info is not None and isinstance(info.checker, DriftChecker)
    return info.checker.check(pd.DataFrame(X, columns=info.feature_names, dtype=float))


def test_drift_windows_alarms_retraining_and_accuracy(stack: Settings) -> None:
    client = t.api(stack)
    name = t.model(client, "monitored")
    run = t.wait_run(client, t.start(client, name, hyperparameters={"epochs": 10}))
    assert run["status"] == "completed", run["error"]
    ops = t.api(stack, "ml_engineer", subject="olga")
    policy = {"retrain_on": "critical", "cooldown_s": 3600}
    body = t.command(ops, "SetMonitoringPolicy", {"model_name": name, "policy": policy})
    assert body["status"] == "accepted", body
    digits = load_digits()
    X, y = digits.data.astype(float), digits.target
    rng = np.random.default_rng(7)

    # 40 windows from the training distribution (the whole digits set: rows the reference never
    # saw included, with their rare pixels that are constant in the reference); the monitor is
    # killed -9 mid-window.
    same = X[rng.choice(len(X), size=40 * W, replace=True)]
    _produce(stack, name, "1.0.0", same[: 10 * W + 77], np.zeros(10 * W + 77, dtype=int))
    _wait_windows(stack, name, 10)
    services.kill_service(stack, "drift-monitor")
    _produce(stack, name, "1.0.0", same[10 * W + 77 :], np.zeros(30 * W - 77, dtype=int))
    checked = _wait_windows(stack, name, 40)
    time.sleep(3)
    checked = [e for e in _events(stack, name) if e.type == "DriftChecked"]
    assert [e.payload["window_id"] for e in checked] == list(range(1, 41))
    assert sum(e.payload["bounds"]["rows"] for e in checked) == 40 * W
    offsets = [o for e in checked for v in e.payload["bounds"]["positions"].values() for o in v]
    assert len(offsets) == 40 * W
    alarms = [e for e in checked if e.payload["severity"] is not None]
    assert len(alarms) <= 2, [e.payload["score"] for e in alarms]  # >= 95% quiet

    # A mild shift (a fifth of the pixel columns brighter): warning, as Evidently says.
    mild = X[rng.choice(len(X), size=W)].copy()
    cols = [c for c in range(64) if X[:, c].std() > 2][:13]
    mild[:, cols] = np.clip(mild[:, cols] + 6, 0, 16)
    _produce(stack, name, "1.0.0", mild, np.zeros(W, dtype=int))
    w41 = _wait_windows(stack, name, 41)[40].payload
    own = _evidently(stack, name, mild)
    assert w41["severity"] == own.severity == "warning", (w41["score"], own.share_drifted)
    assert w41["score"] == pytest.approx(own.share_drifted)

    # A strong shift, three windows: critical each time, one retraining (the cooldown), also
    # with the retraining policy's worker killed -9 as the first critical window is recorded.
    strong = np.clip(16 - X[rng.choice(len(X), size=3 * W)], 0, 16)
    _produce(stack, name, "1.0.0", strong, np.zeros(3 * W, dtype=int))
    _wait_windows(stack, name, 42, timeout_s=120)
    assert services.kill_service(stack, "retraining-orchestrator")
    checked = _wait_windows(stack, name, 44)
    own = _evidently(stack, name, strong[:W])
    assert [e.payload["severity"] for e in checked[41:44]] == ["critical"] * 3 == [own.severity] * 3
    events = _events(stack, name)
    detected = [e for e in events if e.type == "DriftDetected" and e.payload["window_id"] == 42]
    triggered = [e for e in events if e.type == "RetrainingTriggered"]
    assert len(triggered) == 1 and triggered[0].payload["drift_event_id"] == str(
        detected[0].event_id
    )
    report = client.get(f"/monitoring/drift/{detected[0].event_id}/report.html")
    assert report.status_code == 200 and "<html" in report.text[:2000].lower()

    # The retraining it started: one run, a new version whose lineage names the drift event.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = client.get("/training/runs", params={"model": name}).json()["items"]
        if len(runs) == 2:
            break
        time.sleep(0.5)
    retrain = next(r for r in runs if r["run_id"] != run["run_id"])
    done = t.wait_run(client, retrain["run_id"])
    assert done["status"] == "completed", done["error"]
    lineage = client.get(f"/models/{name}/versions/{done['version']}/lineage").json()["lineage"]
    trig = lineage["training_config"]["trigger"]
    assert trig["drift_event_id"] == str(detected[0].event_id)
    assert trig["report"]["sha256"] == detected[0].payload["report_sha256"]
    subs = client.get("/governance/submissions", params={"model_name": name}).json()["items"]
    assert (done["version"], "pending") in {(x["version"], x["status"]) for x in subs}
    time.sleep(2)
    assert len(client.get("/training/runs", params={"model": name}).json()["items"]) == 2

    # Feedback: 100 wrong labels for the first predictions; accuracy falls below 0.9 x validation.
    p = Producer(kafka.client_config(stack, principal="client"))
    ids = _produce(stack, name, "1.0.0", X[:100], y[:100])
    time.sleep(5)  # the monitor has joined them (feedback before its prediction is dropped)
    for rid, label in zip(ids, y[:100], strict=True):
        fb = {"request_id": rid, "label": int((label + 1) % 10)}
        p.produce("inference.feedback", key=rid.encode(), value=orjson.dumps(fb))
    p.flush(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dropped = [e for e in _events(stack, name) if e.type == "AccuracyDropped"]
        if dropped:
            break
        time.sleep(0.5)
    assert dropped and dropped[0].payload["accuracy"] == 0.0

    # A stop (SIGTERM) with a window open, the last 100 rows': the monitor does not wait for its
    # unacked records, so the supervisor never has to kill it (it would after stopwaitsecs, 20 s).
    started = time.monotonic()
    supervisor.stop(stack, "drift-monitor")
    stopped_in = time.monotonic() - started
    services.start_service(stack, "drift-monitor")
    assert stopped_in < 15, f"the monitor took {stopped_in:.1f} s to stop"

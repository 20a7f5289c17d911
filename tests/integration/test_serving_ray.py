"""Serving on a real Ray Serve and Kafka: predictions, bad requests, a hot swap under a steady
stream, a refused swap, canary routing, and a replica killed mid-stream.

Skipped when Ray cannot start here (``VERITAS_SKIP_RAY=1`` skips it outright). One Ray instance
and one deployment serve the whole module; each test streams on its own topics.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.settings import Settings
from ml import numpy_forward, signing
from serving.protocol import routes_to_canary, share_threshold
from tests import serving_support as s
from tests.helpers import sasl_conf

pytestmark = [pytest.mark.kafka, pytest.mark.ray]
KEY = signing.generate_private_key()


@pytest.fixture(scope="module")
def arts() -> list[Path]:
    return s.cached_artifacts([1, 2, 3])


@pytest.fixture(scope="module")
def serving(infra: Settings, arts: list[Path]) -> Iterator[dict[str, Any]]:
    if os.environ.get("VERITAS_SKIP_RAY") == "1":
        pytest.skip("VERITAS_SKIP_RAY=1")
    from serving import control

    servers = infra.kafka_bootstrap_servers
    tag = uuid.uuid4().hex[:6]
    topics = {"req": f"srv.req.{tag}", "res": f"srv.res.{tag}", "reports": f"srv.reports.{tag}"}
    s.create_topics(servers, {topics["req"]: 2, topics["res"]: 2, topics["reports"]: 1})
    try:
        facts = control.start_ray(control.RayOptions(temp_dir="/tmp/ray-vtest"))
    except Exception as exc:  # no Ray here: the rest of the suite still runs
        pytest.skip(f"Ray cannot start here: {exc}")
    ingress = {
        "bootstrap_servers": servers,
        "client": sasl_conf(),
        "requests_topic": topics["req"],
        "results_topic": topics["res"],
        "group_id": f"srv-{uuid.uuid4().hex[:6]}",
        "max_batch": 200,
    }
    settings = control.settings_dict(ingress=ingress, warm_rows=64, report_topic=topics["reports"])
    app = control.Serving(settings)
    specs = [s.signed_spec(a, KEY, v) for a, v in zip(arts, ("1.0.0", "1.1.0", "1.2.0"), strict=True)]  # fmt: skip
    app.deploy({"models": {"digits": {"production": specs[0]}}})
    try:
        yield {"app": app, "servers": servers, "specs": specs, "facts": facts, **topics}
    finally:
        control.stop_ray()


def _results(ctx: dict[str, Any], ids: set[str], timeout_s: float = 120) -> list[dict[str, Any]]:
    """Every result of ``ids`` seen by a read_committed reader (read from the start)."""
    reader = s.Results(ctx["servers"], ctx["res"])
    try:
        missing = reader.until(ids, timeout_s)
        reader.poll(1.0)  # anything more (a duplicate) would arrive now
        assert not missing, f"{len(missing)} requests have no result, e.g. {sorted(missing)[:3]}"
        return [r for r in reader.records if r["request_id"] in ids]
    finally:
        reader.close()


def _exactly_one(results: list[dict[str, Any]], ids: set[str]) -> dict[str, dict[str, Any]]:
    counts = Counter(r["request_id"] for r in results)
    assert set(counts) == ids and max(counts.values()) == 1, counts.most_common(3)
    return {r["request_id"]: r for r in results}


def _serve_config(ctx: dict[str, Any], prod: int, canary: int | None = None, share: float = 0.05) -> dict[str, Any]:  # fmt: skip
    specs = ctx["specs"]
    return {"models": {"digits": {"production": specs[prod], "canary": None if canary is None else specs[canary], "canary_share": share}}}  # fmt: skip


def test_predictions_equal_numpy_forward_and_bad_requests_get_errors(
    serving: dict[str, Any], arts: list[Path]
) -> None:
    ctx = serving
    ctx["app"].set_serving(_serve_config(ctx, 0))
    rows = s.holdout_rows(300)
    msgs = [(f"good-{i:08d}".encode(), s.request(i, r, prefix="good")) for i, r in enumerate(rows)]
    bad = {
        "bad-json": (b"{nope", "invalid_json"),
        "bad-model": (b'{"request_id":"bad-model","model_name":"nope","features":[1]}', "unknown_model"),
        "bad-count": (b'{"request_id":"bad-count","model_name":"digits","features":[1,2]}', "wrong_feature_count"),
        "bad-type": (b'{"request_id":"bad-type","model_name":"digits","features":"x"}', "schema_violation"),
    }  # fmt: skip
    mixed = msgs[:150] + [(k.encode(), v) for k, (v, _) in bad.items()] + msgs[150:]
    s.produce_all(ctx["servers"], ctx["req"], mixed)
    ids = {f"good-{i:08d}" for i in range(300)} | set(bad)
    got = _exactly_one(_results(ctx, ids), ids)
    for k, (_, code) in bad.items():
        assert got[k]["reason_code"] == code and got[k]["error"]
    probs = numpy_forward.predict_proba(
        numpy_forward.load_state(arts[0] / "model.safetensors"), np.asarray(rows, dtype=np.float32)
    )
    for i in range(300):
        r = got[f"good-{i:08d}"]
        assert r["model_version"] == "1.0.0" and r["prediction"] == str(probs[i].argmax())
        assert abs(r["confidence"] - float(probs[i].max())) < 1e-5
    text = ctx["app"].handle().metrics_text.remote().result().decode()
    for needle in (
        'veritas_serving_predictions_total{model="digits",slot="production",version="1.0.0"}',
        'veritas_serving_errors_total{reason_code="invalid_json"}',
        'veritas_serving_latency_seconds_bucket{le="0.05",model="digits",version="1.0.0"}',
        'veritas_serving_batch_rows_count{path="kafka"}',
        "veritas_serving_transaction_rows_count",
        "veritas_serving_commit_seconds_count",
    ):
        assert needle in text, needle
    s.wait_for(lambda: "veritas_serving_consumer_lag{" in ctx["app"].handle().metrics_text.remote().result().decode(), 30)  # fmt: skip


def test_a_hot_swap_under_a_steady_stream_and_a_refused_swap(
    serving: dict[str, Any], arts: list[Path], tmp_path: Path
) -> None:
    ctx, app = serving, serving["app"]
    app.set_serving(_serve_config(ctx, 0))
    pid = next(iter(app.replicas().values()))["pid"]
    tampered = tmp_path / "t"
    shutil.copytree(arts[2], tampered)
    forged = {**ctx["specs"][2], "artifact": str(tampered / "model.safetensors"), "version": "6.6.6"}  # fmt: skip
    forged["signature"] = s.signed_spec(tampered, signing.generate_private_key(), "6.6.6")["signature"]  # fmt: skip
    with s.Stream(ctx["servers"], ctx["req"], 400, s.holdout_rows(500)) as stream:
        time.sleep(4)
        t0 = time.monotonic()
        app.set_serving(_serve_config(ctx, 1))  # 1.0.0 -> 1.1.0 in place
        print(f"swap applied in {time.monotonic() - t0:.2f} s")
        time.sleep(3)
        before = app.handle().reports.remote().result()[-1]["seq"]
        refused = {"models": {"digits": {"production": forged}}}
        app.set_serving(refused)  # bad signature: 1.1.0 keeps serving
        time.sleep(3)
    ids = stream.ids()
    got = _exactly_one(_results(ctx, ids), ids)
    assert {r["model_version"] for r in got.values()} == {"1.0.0", "1.1.0"}
    for part in (0, 1):  # in each partition's order: 1.0.0 ... 1.0.0 1.1.0 ... 1.1.0
        order = sorted((off, rid) for rid, (p, off) in stream.placed.items() if p == part)
        versions = [got[rid]["model_version"] for _, rid in order]
        switch = versions.index("1.1.0")
        assert set(versions[:switch]) == {"1.0.0"} and set(versions[switch:]) == {"1.1.0"}
    status = next(iter(app.replicas().values()))
    assert status["pid"] == pid and status["versions"]["digits"]["production"] == "1.1.0"
    refusals = app.handle().refusals.remote(before).result()
    assert [(r["reason"], r["version"], r["still_serving"]) for r in refusals] == [
        ("bad_signature", "6.6.6", "1.1.0")
    ]
    reader = s.Results(ctx["servers"], ctx["reports"])  # the same report, on the report topic
    reader.poll(3.0)
    reader.close()
    assert any(r.get("kind") == "load_refused" and r["version"] == "6.6.6" for r in reader.records)


def test_canary_routing_follows_the_request_id_hash(serving: dict[str, Any]) -> None:
    ctx = serving
    ctx["app"].set_serving(_serve_config(ctx, 0, canary=1, share=0.3))
    rows = s.holdout_rows(2000)
    s.produce_all(ctx["servers"], ctx["req"], ((f"can-{i:08d}".encode(), s.request(i, r, prefix="can")) for i, r in enumerate(rows)))  # fmt: skip
    ids = {f"can-{i:08d}" for i in range(2000)}
    got = _exactly_one(_results(ctx, ids), ids)
    t = share_threshold(0.3)
    for rid, r in got.items():
        assert r["model_version"] == ("1.1.0" if routes_to_canary(rid, t) else "1.0.0")
    share = sum(r["model_version"] == "1.1.0" for r in got.values()) / len(got)
    assert 0.25 < share < 0.35


def test_a_replica_killed_mid_stream_loses_and_repeats_nothing(serving: dict[str, Any]) -> None:
    ctx, app = serving, serving["app"]
    app.set_serving(_serve_config(ctx, 0))
    old = next(iter(app.replicas().values()))
    with s.Stream(ctx["servers"], ctx["req"], 300, s.holdout_rows(500)) as stream:
        time.sleep(3)
        killed = time.monotonic()
        os.kill(old["pid"], signal.SIGKILL)
        s.wait_for(lambda: _new_replica(app, old["replica"]), 120, 1.0)
        back = time.monotonic() - killed
        time.sleep(3)
    ids = stream.ids()
    got = _exactly_one(_results(ctx, ids, timeout_s=180), ids)
    print(f"replica back {back:.1f} s after SIGKILL; {len(ids)} requests, each one result")
    new_status = next(iter(app.replicas().values()))
    print(
        f"rank {old['rank']} -> {new_status['rank']}, {new_status['ingress']['transactional_id']}"
    )
    assert all(r["model_version"] == "1.0.0" for r in got.values())
    new = next(iter(app.replicas().values()))
    assert new["pid"] != old["pid"] and app.replica_states() == {"RUNNING": 1}


def _new_replica(app: Any, old_id: str) -> bool:
    try:
        status = next(iter(app.replicas(calls=1).values()))
    except Exception:  # the handle's call may fail while the replica is being replaced
        return False
    return bool(status["replica"] != old_id and status["ingress"]["healthy"])

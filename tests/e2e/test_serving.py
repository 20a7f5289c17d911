"""Serving on the real stack: the serving controller (Ray Serve, one replica) and the deployment
saga follow the registry's and serving's events. A promoted version answers inference.requests
with its own predictions; a promotion and a rollback under a steady stream switch once each; a
healthy canary is promoted and a failing or slow one rolled back by the saga; a tampered or
foreign-signed version is refused and the previous one keeps serving; a replica killed mid-stream
loses nothing; malformed requests get error results and the stream keeps flowing.

One module-scoped serving start (Ray's cold start is ~25-60 s here); the tests run in order and
share the model, each leaving production where the next expects it."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.services import metrics_port
from config.settings import Settings
from domain.serving import fleet_id
from infra import supervisor
from ml import signing
from ml.store import ArtifactStore
from tests import deployment_support as d
from tests import serving_support as s
from tests import training_support as t
from veritas import services

pytestmark = [pytest.mark.timeout(900), pytest.mark.ray]
SERVING = ("deployment-orchestrator", "serving-controller")


def _ready(st: Settings) -> bool:
    try:
        body = httpx.get(
            f"http://127.0.0.1:{metrics_port(st, 'serving-controller')}/metrics", timeout=2
        ).text
    except httpx.HTTPError:
        return False
    return "veritas_serving_ready 1.0" in body


@pytest.fixture(scope="module")
def serving(stack: Settings) -> Iterator[Settings]:
    if os.environ.get("VERITAS_SKIP_RAY") == "1":
        pytest.skip("VERITAS_SKIP_RAY=1")
    services.start_serving(stack)
    try:
        s.wait_for(lambda: _ready(stack), 300, 1.0)
        yield stack
    finally:
        for name in SERVING:  # Ray's memory back for the rest of the suite
            supervisor.stop(stack, name)


@pytest.fixture(scope="module")
def arts() -> list[Path]:
    return s.cached_artifacts([1, 2, 3])


@pytest.fixture(scope="module")
def ops(serving: Settings) -> httpx.Client:
    return t.api(serving, "ml_engineer", subject="olga")


@pytest.fixture(scope="module")
def model(serving: Settings, ops: httpx.Client, arts: list[Path]) -> str:
    name = t.model(ops, "srv")
    d.register_version(ops, serving, name, arts[0], "1.0.0")
    d.approve(serving, name, "1.0.0")
    body = t.command(ops, "TransitionStage", {"model_name": name, "version": "1.0.0", "stage": "production"})  # fmt: skip
    assert body["status"] == "accepted", body
    d.wait_deployment(ops, name, lambda x: x["production_version"] == "1.0.0")
    return name


def _results(
    st: Settings, ids: set[str], timeout_s: float = 120
) -> dict[str, list[dict[str, Any]]]:
    """Every result of `ids` (read_committed, from the start), grouped by request id."""
    reader = s.Results(st.kafka_bootstrap_servers, "inference.results")
    try:
        missing = reader.until(ids, timeout_s)
        reader.poll(1.0)  # a duplicate would arrive now
        assert not missing, f"{len(missing)} requests without a result, e.g. {sorted(missing)[:3]}"
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in reader.records:
            if r.get("request_id") in ids:
                out[r["request_id"]].append(r)
        return out
    finally:
        reader.close()


def _once(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    repeats = {k: len(v) for k, v in results.items() if len(v) != 1}
    assert not repeats, f"requests with more than one result: {list(repeats.items())[:3]}"
    return {k: v[0] for k, v in results.items()}


def _send(st: Settings, model: str, rows: list[list[float]]) -> set[str]:
    prefix = uuid.uuid4().hex[:8]
    msgs = [(f"{prefix}-{i:08d}".encode(), s.request(i, r, model, prefix)) for i, r in enumerate(rows)]  # fmt: skip
    s.produce_all(st.kafka_bootstrap_servers, "inference.requests", msgs)
    return {k.decode() for k, _ in msgs}


def test_requests_get_the_promoted_versions_own_predictions(
    serving: Settings, model: str, arts: list[Path]
) -> None:
    rows = s.holdout_rows(300, seed=7)
    ids = _send(serving, model, rows)
    got = _once(_results(serving, ids))
    assert {r["model_version"] for r in got.values()} == {"1.0.0"}
    assert all(r["model_name"] == model and "reason_code" not in r for r in got.values())
    want = d.expected_labels(arts[0], rows)
    by_index = [got[rid]["prediction"] for rid in sorted(got)]
    assert by_index == want  # the ids sort in row order


def _runs(versions: list[str]) -> list[str]:
    out: list[str] = []
    for v in versions:
        if not out or out[-1] != v:
            out.append(v)
    return out


def test_promotion_then_rollback_under_a_steady_stream_switch_once_each(
    serving: Settings, model: str, ops: httpx.Client, arts: list[Path]
) -> None:
    d.register_version(ops, serving, model, arts[1], "1.1.0")
    d.approve(serving, model, "1.1.0")
    with s.Stream(
        serving.kafka_bootstrap_servers, "inference.requests", 60, s.holdout_rows(64), model
    ) as stream:
        time.sleep(2)
        body = t.command(ops, "TransitionStage", {"model_name": model, "version": "1.1.0", "stage": "production"})  # fmt: skip
        assert body["status"] == "accepted", body
        d.wait_deployment(ops, model, lambda x: x["production_version"] == "1.1.0")
        time.sleep(2)
        body = t.command(ops, "RollbackProduction", {"model_name": model, "reason": "test"})
        assert body["status"] == "accepted", body
        d.wait_deployment(ops, model, lambda x: x["production_version"] == "1.0.0")
        time.sleep(2)
    got = _once(_results(serving, stream.ids()))
    assert len(got) == stream.sent > 300
    by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for rid, r in got.items():
        part, offset = stream.placed[rid]
        by_partition[part].append((offset, r["model_version"]))
    seen = Counter(r["model_version"] for r in got.values())
    assert set(seen) == {"1.0.0", "1.1.0"}, seen
    for part, pairs in by_partition.items():
        runs = _runs([v for _, v in sorted(pairs)])
        assert runs in (["1.0.0", "1.1.0", "1.0.0"], ["1.0.0", "1.1.0"], ["1.1.0", "1.0.0"], ["1.0.0"]), (part, runs)  # fmt: skip


def _events(client: httpx.Client, model: str) -> list[dict[str, Any]]:
    dep = d.deployment(client, model)
    assert dep is not None
    return list(dep["history"])


def _rollout(
    st: Settings, client: httpx.Client, model: str, version: str, **extra: Any
) -> dict[str, Any]:
    """StartDeployment under a steady stream, until the rollout has ended."""
    payload = {"model_name": model, "version": version, "canary_share": 0.25, "min_canary_requests": 40, **extra}  # fmt: skip
    with s.Stream(
        st.kafka_bootstrap_servers, "inference.requests", 50, s.holdout_rows(64, seed=3), model
    ) as stream:
        body = t.command(client, "StartDeployment", payload)
        assert body["status"] == "accepted", body
        end = d.wait_deployment(client, model, lambda x: x["status"] != "canary", 240)
    results = _once(_results(st, stream.ids()))
    return {"deployment": end, "results": results}


def test_a_healthy_canary_is_promoted_and_failing_or_slow_ones_rolled_back(
    serving: Settings, model: str, ops: httpx.Client, arts: list[Path]
) -> None:
    d.register_version(ops, serving, model, arts[2], "1.2.0")
    d.approve(serving, model, "1.2.0")
    healthy = _rollout(serving, ops, model, "1.2.0")
    dep = healthy["deployment"]
    assert dep["status"] == "promoted", dep
    assert dep["decision"]["outcome"] == "promote" and dep["measured"]["canary"]["requests"] >= 40
    d.wait_deployment(ops, model, lambda x: x["production_version"] == "1.2.0" and x["canary_version"] is None)  # fmt: skip
    versions = Counter(r["model_version"] for r in healthy["results"].values())
    assert versions["1.2.0"] > 0 and set(versions) <= {"1.0.0", "1.2.0"}

    for version, faults, reason in (
        ("1.3.0", {"error": True}, "error_rate"),
        ("1.4.0", {"delay_ms": 400.0}, "p95_latency"),
    ):
        d.register_version(ops, serving, model, arts[0], version)
        d.approve(serving, model, version)
        bad = _rollout(serving, ops, model, version, faults=faults)
        dep = bad["deployment"]
        assert dep["status"] == "rolled_back" and dep["decision"]["reason"] == reason, dep
        assert dep["decision"][reason]["regressed"] is True
        stable = [r for r in bad["results"].values() if r.get("model_version") == "1.2.0"]
        assert stable and not [r for r in stable if "reason_code" in r]  # stable saw no error
        d.wait_deployment(ops, model, lambda x: x["canary_version"] is None)
    types = [e["event_type"] for e in _events(ops, model)]
    assert types.count("CanaryPromoted") == 1 and types.count("CanaryRolledBack") == 2


def test_promotion_without_production_approval_is_refused_in_an_event(
    serving: Settings, model: str, ops: httpx.Client, arts: list[Path]
) -> None:
    d.register_version(ops, serving, model, arts[1], "1.5.0")
    d.approve(serving, model, "1.5.0", stage="staging")
    out = _rollout(serving, ops, model, "1.5.0")
    dep = out["deployment"]
    assert dep["status"] == "rolled_back" and dep["decision"]["reason"] == "approval_required"
    refused = [e for e in _events(ops, model) if e["event_type"] == "PromotionRefused"]
    assert refused and refused[-1]["detail"]["reason_code"] == "approval_required"
    assert d.deployment(ops, model)["production_version"] == "1.2.0"  # type: ignore[index]


def _refusal(client: httpx.Client, model: str, version: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        hits = [e for e in _events(client, model) if e["event_type"] == "LoadRefused" and e["version"] == version]  # fmt: skip
        if hits:
            return dict(hits[-1]["detail"])
        time.sleep(0.5)
    raise AssertionError(f"no LoadRefused for {version}")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def malformed(draw: st.DrawFn, model: str, rid: str) -> bytes:
    """A request that must get an error result (never a prediction), its id `rid` or none."""
    kind = draw(st.sampled_from(["bytes", "json", "fields", "features"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40).filter(lambda b: not b.strip().startswith(b"{")))
    if kind == "json":
        return json.dumps(draw(JSONISH.filter(lambda v: not isinstance(v, dict)))).encode()
    body: dict[str, Any] = {"request_id": rid, "model_name": model, "features": [0.0] * 64}
    if kind == "fields":
        field = draw(st.sampled_from(["model_name", "features", "correlation_id", "extra"]))
        bad = draw(JSONISH.filter(lambda v: not isinstance(v, str | None | list | dict)))
        body[field] = bad
    else:
        n = draw(st.integers(0, 70).filter(lambda n: n != 64))
        body["features"] = draw(
            st.one_of(
                st.lists(st.floats(allow_nan=False), min_size=n, max_size=n),
                st.lists(JSONISH, min_size=64, max_size=64).filter(
                    lambda xs: any(type(x) not in (int, float) for x in xs)
                ),
                st.just([1e300] * 64),  # beyond float32: not finite
            )
        )
    return json.dumps(body).encode()  # big integers and Infinity included (json, not orjson)


def test_malformed_requests_get_error_results_and_the_stream_keeps_flowing(
    serving: Settings, model: str
) -> None:
    sent: dict[str, bytes] = {}

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def batch(data: st.DataObject) -> None:
        prefix = uuid.uuid4().hex[:8]
        for i in range(25):
            rid = f"fz-{prefix}-{i:03d}"
            sent[rid] = data.draw(malformed(model, rid))

    batch()
    s.produce_all(serving.kafka_bootstrap_servers, "inference.requests", [(k.encode(), v) for k, v in sent.items()])  # fmt: skip
    good = _send(serving, model, s.holdout_rows(50))  # after the fuzz: still answered
    got = _once(_results(serving, set(sent) | good))
    codes = Counter(got[k].get("reason_code") for k in sent)
    assert None not in codes, [sent[k] for k in sent if "reason_code" not in got[k]][:3]
    assert set(codes) <= {"invalid_json", "schema_violation", "wrong_feature_count"}, codes
    assert all("reason_code" not in got[k] and got[k]["model_version"] for k in good)


def _replica_pids(st: Settings) -> set[int]:
    """This stack's Serve replicas (Ray workers that inherited its VERITAS_VAR_DIR)."""
    mine = f"VERITAS_VAR_DIR={st.var_dir}".encode()
    out = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"ServeReplica" in cmd and mine in (proc / "environ").read_bytes().split(b"\0"):
                out.add(int(proc.name))
        except OSError:
            continue
    return out


def _settled_replicas(st: Settings) -> set[int]:
    first = _replica_pids(st)
    time.sleep(5)
    return first if first and _replica_pids(st) == first else set()


def test_a_replica_killed_mid_stream_loses_nothing_and_comes_back(
    serving: Settings, model: str
) -> None:
    # The replica set may still be settling (an earlier test's backlog can scale serving out, and
    # a replaced replica drains before it exits): kill one of a set that has held for 5 s.
    before = s.wait_for(lambda: _settled_replicas(serving), 120, 0.5)
    with s.Stream(
        serving.kafka_bootstrap_servers, "inference.requests", 60, s.holdout_rows(64), model
    ) as stream:
        time.sleep(3)
        os.kill(min(before), signal.SIGKILL)
        after = s.wait_for(lambda: _replica_pids(serving) - before, 120, 0.5)
        time.sleep(3)
    got = _once(_results(serving, stream.ids(), timeout_s=180))
    assert len(got) == stream.sent and after
    assert not [r for r in got.values() if "reason_code" in r]


def test_the_controller_and_the_deployment_saga_killed_mid_stream_lose_nothing(
    serving: Settings, model: str
) -> None:
    """kill -9 of the serving controller (its process group: the driver and the local Ray it
    started, replicas included) and of the deployment saga's worker, mid-stream: the supervisor
    restarts both, Serve comes back with what the events say, and every request still gets
    exactly one result, from the version in production."""
    with s.Stream(
        serving.kafka_bootstrap_servers, "inference.requests", 60, s.holdout_rows(64), model
    ) as stream:
        time.sleep(3)
        killed = [services.kill_service(serving, name) for name in SERVING]
        assert all(killed)
        s.wait_for(lambda: _ready(serving), 300, 1.0)
        assert all(services.service_pid(serving, n) not in (None, *killed) for n in SERVING)
        time.sleep(3)
    got = _once(_results(serving, stream.ids(), timeout_s=300))
    assert len(got) == stream.sent
    assert not [r for r in got.values() if "reason_code" in r]
    assert len({r["model_version"] for r in got.values()}) == 1


def test_a_tampered_or_foreign_signed_version_is_refused_and_the_previous_keeps_serving(
    serving: Settings, model: str, ops: httpx.Client, arts: list[Path]
) -> None:
    foreign = signing.generate_private_key()
    d.register_version(ops, serving, model, arts[1], "2.0.0", foreign_key=foreign)
    # One byte of the stored artifact changed after its registration (as a disk fault would).
    art = d.register_version(ops, serving, model, arts[0], "2.0.1")
    path = ArtifactStore(serving.artifacts_dir).path_of(art["sha256"])
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    for version, reason in (("2.0.0", "bad_signature"), ("2.0.1", "sha256_mismatch")):
        d.approve(serving, model, version)
        body = t.command(ops, "TransitionStage", {"model_name": model, "version": version, "stage": "production"})  # fmt: skip
        assert body["status"] == "accepted", body
        refusal = _refusal(ops, model, version)
        assert refusal["reason"] == reason and refusal["slot"] == "production", refusal
        assert refusal["still_serving"] == "1.2.0"
        got = _once(_results(serving, _send(serving, model, s.holdout_rows(20))))
        assert {r["model_version"] for r in got.values()} == {"1.2.0"}
    assert d.deployment(ops, model)["production_version"] == "1.2.0"  # type: ignore[index]


def test_a_backlog_scales_serving_out_within_its_bound_and_loses_nothing(
    serving: Settings, model: str
) -> None:
    """Last: it leaves two replicas. settings: lag 3,000, checked every second, bound 2."""
    ids = _send(serving, model, s.holdout_rows(40_000))
    auditor = t.api(serving, "auditor", subject="audrey")
    url = f"/audit/ServingFleet/{fleet_id()}"
    trail = s.wait_for(lambda: (r := auditor.get(url)).status_code == 200 and r.json(), 180, 1.0)
    scaled = [e["payload"] for e in trail["events"] if e["type"] == "ScaledOut"]
    assert scaled[0]["from_replicas"] == 1 and scaled[0]["to_replicas"] == 2, scaled
    assert scaled[0]["lag"] > scaled[0]["threshold"] == 3000 and trail["chain_valid"]
    got = _once(_results(serving, ids, timeout_s=300))
    assert len(got) == len(ids) and not [r for r in got.values() if "reason_code" in r]
    s.wait_for(lambda: len(_replica_pids(serving)) == 2, 120, 1.0)

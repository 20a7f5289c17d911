"""Which Serve layout, and which ``@serve.batch`` defaults: measured side by side in one Ray.

Layouts, each serving two models (digits MLPs of two seeds) through a handle:

* ``one``: one ``ModelServer`` deployment holding both models (what ``serving`` does);
* ``per-model``: one ``ModelServer`` application per model;
* ``multiplexed``: ``@serve.multiplexed`` (``bench/_serving_multiplexed.py``), models loaded on
  the first request that names them.

For each: deploy time, RSS of every Ray process (the replicas are the difference), the first
call per model, and rows/s of 500-row ``predict_block`` calls (4 in flight). Then, on ``one``,
single-row ``predict`` calls (64 in flight) for several ``@serve.batch`` sizes and waits.
No Kafka. ``python bench/serving_layouts.py``
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench._stack import RESULTS_DIR, markdown_table  # noqa: E402
from ml import signing  # noqa: E402
from tests import serving_support as s  # noqa: E402

ENV = {"env_vars": {"PYTHONPATH": str(ROOT)}}


def ray_rss() -> tuple[float, int]:
    total, replicas = 0.0, 0
    for p in psutil.Process().children(recursive=True):
        try:
            total += p.memory_info().rss / 2**20
            replicas += "ServeReplica" in " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
    return total, replicas


def app(name: str, import_path: str, args: dict[str, Any], user_config: dict[str, Any] | None, dep: str) -> dict[str, Any]:  # fmt: skip
    d: dict[str, Any] = {"name": dep, "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.5}}
    if user_config is not None:
        d["user_config"] = user_config
    return {"name": name, "route_prefix": None, "import_path": import_path, "args": args, "deployments": [d], "runtime_env": ENV}  # fmt: skip


def deploy(apps: list[dict[str, Any]], deployments: list[tuple[str, str]]) -> float:
    """Seconds until every app runs; then waits for the replaced apps' replicas to be gone."""
    from ray import serve

    from serving import control

    t0 = time.perf_counter()
    control.deploy_declarative(apps)
    s.wait_for(lambda: all(_running(serve.status(), a, d) for a, d in deployments), 300, 0.2)
    took = time.perf_counter() - t0
    s.wait_for(lambda: ray_rss()[1] == len(deployments), 120, 0.5)
    return took


def _running(status: Any, app_name: str, dep: str) -> bool:
    a = status.applications.get(app_name)
    return bool(a and a.status == "RUNNING" and dep in a.deployments)


def blocks(calls: list[Any], seconds: float = 5.0) -> float:
    """Rows/s of 500-row blocks, 4 in flight, round robin over ``calls``."""
    rows, done, i = s.holdout_rows(500), 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        futures = []
        for _ in range(4):
            call, model = calls[i % len(calls)]
            i += 1
            block = [{"request_id": f"b{i}-{j}", "model_name": model, "features": r} for j, r in enumerate(rows)]  # fmt: skip
            futures.append(call(block))
        for f in futures:
            assert f.result()[0]["model_name"]
            done += 500
    return done / (time.perf_counter() - start)


def first_calls(calls: list[Any]) -> list[float]:
    row = s.holdout_rows(1)[0]
    out = []
    for call, model in calls:
        t0 = time.perf_counter()
        call([{"request_id": "first", "model_name": model, "features": row}]).result()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def singles(handle: Any, seconds: float = 4.0, inflight: int = 64) -> tuple[float, float]:
    """Rows/s and median latency (ms) of single-row ``predict`` calls, ``inflight`` at once."""
    row = s.holdout_rows(1)[0]
    lat: list[float] = []
    pending: list[tuple[Any, float]] = []
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        while len(pending) < inflight:
            pending.append((handle.predict.remote({"request_id": f"s{n}", "model_name": "m1", "features": row}), time.perf_counter()))  # fmt: skip
            n += 1
        f, t0 = pending.pop(0)
        f.result()
        lat.append((time.perf_counter() - t0) * 1000)
    for f, _ in pending:
        f.result()
    return len(lat) / (time.perf_counter() - start), statistics.median(lat)


def main() -> None:
    from ray import serve

    from serving import control

    arts = s.cached_artifacts([1, 2])
    key = signing.generate_private_key()
    specs = {f"m{i + 1}": s.signed_spec(a, key, "1.0.0") for i, a in enumerate(arts)}
    both = {"models": {m: {"production": sp} for m, sp in specs.items()}}
    settings = control.settings_dict(warm_rows=64)
    rows: list[list[Any]] = []
    sweep: list[list[Any]] = []
    facts = control.start_ray()
    try:
        base, _ = ray_rss()
        # one deployment, both models
        t = deploy([app("one", control.IMPORT_PATH, settings, both, "ModelServer")], [("one", "ModelServer")])  # fmt: skip
        h = serve.get_deployment_handle("ModelServer", app_name="one")
        calls = [(h.predict_block.remote, m) for m in specs]
        first = first_calls(calls)
        rss, reps = ray_rss()
        rows.append(["one deployment, 2 models", f"{t:.1f}", f"{rss:,.0f} (+{rss - base:,.0f})", reps, " / ".join(f"{x:.0f}" for x in first), f"{blocks(calls):,.0f}"])  # fmt: skip
        for size, wait in ((1, 0.0), (16, 0.002), (64, 0.002), (256, 0.002), (256, 0.01)):
            tag = f"sweep-{size}-{wait}"
            cfg = {**both, "batch": {"max_size": size, "wait_s": wait}, "digest": tag}
            control.deploy_declarative([app("one", control.IMPORT_PATH, settings, cfg, "ModelServer")])  # fmt: skip
            s.wait_for(lambda t=tag: h.status.remote().result()["digest"] == t, 60)
            rate, p50 = singles(h)
            sweep.append([size, f"{wait * 1000:.0f}", f"{rate:,.0f}", f"{p50:.1f}"])
            print(sweep[-1], flush=True)
        # one application per model
        apps = [app(f"per-{m}", control.IMPORT_PATH, settings, {"models": {m: {"production": sp}}}, "ModelServer") for m, sp in specs.items()]  # fmt: skip
        t = deploy(apps, [(f"per-{m}", "ModelServer") for m in specs])
        calls = [(serve.get_deployment_handle("ModelServer", app_name=f"per-{m}").predict_block.remote, m) for m in specs]  # fmt: skip
        first = first_calls(calls)
        rss, reps = ray_rss()
        rows.append(["one deployment per model", f"{t:.1f}", f"{rss:,.0f} (+{rss - base:,.0f})", reps, " / ".join(f"{x:.0f}" for x in first), f"{blocks(calls):,.0f}"])  # fmt: skip
        # multiplexed
        mx = app("mx", "bench._serving_multiplexed:build", {"models": specs}, None, "Multiplexed")
        t = deploy([mx], [("mx", "Multiplexed")])
        hm = serve.get_deployment_handle("Multiplexed", app_name="mx")
        calls = [(hm.options(multiplexed_model_id=m).predict_block.remote, m) for m in specs]
        first = first_calls(calls)
        rss, reps = ray_rss()
        rows.append(["@serve.multiplexed, 2 models", f"{t:.1f}", f"{rss:,.0f} (+{rss - base:,.0f})", reps, " / ".join(f"{x:.0f}" for x in first), f"{blocks(calls):,.0f}"])  # fmt: skip
    finally:
        control.stop_ray()
    print(f"Ray {facts['ray_version']}; RSS of Ray without replicas {base:,.0f} MiB")
    print(markdown_table(["layout", "deploy s", "Ray RSS MiB", "replicas", "first call per model ms", "rows/s, 500-row blocks"], rows))  # fmt: skip
    print(markdown_table(["@serve.batch max_size", "wait ms", "single-row calls/s (64 in flight)", "p50 ms"], sweep))  # fmt: skip
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "serving_layouts.json").write_text(json.dumps({"layouts": rows, "batch": sweep, "ray": facts, "at": time.time()}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

"""Serving bench: Kafka -> Ray Serve -> Kafka against baselines measured in the same run.

1. ``torch``: the model alone on pre-decoded tensors at the same batch size (the physical limit).
2. ``plain``: one plain process (no Ray) that consumes the same requests, decodes the same JSON,
   runs the same torch model and produces the same results, one Kafka transaction per batch
   (and once with at-least-once delivery, for the cost of the transactions).
3. ``serve``: the ``serving`` app (one replica, its in-replica ingress) on the same backlog.
   Rates come from the results' timestamps (first to last result), the same way for 2 and 3.
4. p50/p99 request -> result latency at half the serve rate, against a raw produce -> consume
   hop at the same rate, both in this process.
5. Idle RSS (and PSS) of every Ray process with one torch replica, after the load.

Its own broker (port 39642, ``var/bench-serving``), its own Ray; both stopped at the end.
``python bench/serving_throughput.py [--n 100000] [--batch 500]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

from bench._serving_bridge import bridge  # noqa: E402
from bench._stack import RESULTS_DIR, markdown_table  # noqa: E402
from ml import signing  # noqa: E402
from tests import serving_support as s  # noqa: E402
from tests.helpers import sasl_conf, servers_conf  # noqa: E402

PORT, DATA = 39642, ROOT / "var" / "bench-serving"
SERVERS = f"127.0.0.1:{PORT}"
REQ, REQ_SERVE, HOP = "bench.requests", "bench.requests.serve", "bench.hop"
BASELINES = str(Path(__file__).with_name("_serving_baselines.py"))


def broker(action: str) -> None:
    env = {**os.environ, "KAFKA_PORT": str(PORT), "KAFKA_DATA_DIR": str(DATA / "kafka")}
    subprocess.run(["bash", str(ROOT / "infra/kafka/kafka.sh"), action], env=env, check=True)


def rate_from_timestamps(topic: str, n: int, timeout_s: float = 300) -> float:
    """Results/s between the first and the last result's timestamp, once all ``n`` are in."""
    c = Consumer(
        {
            **servers_conf(SERVERS),
            "group.id": f"rate-{topic}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    c.subscribe([topic])
    stamps: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(stamps) < n and time.monotonic() < deadline:
        stamps += [m.timestamp()[1] for m in c.consume(5000, 0.2) if m.error() is None]
    c.close()
    if len(stamps) < n:
        raise RuntimeError(f"{topic}: {len(stamps)} of {n} results")
    return (n - 1) / max(1e-3, (max(stamps) - min(stamps)) / 1000)


def child(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, BASELINES, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def paced(topic: str, rate: float, seconds: float, rows: list[list[float]], prefix: str) -> dict[str, float]:  # fmt: skip
    """Produce ``rate``/s for ``seconds``; the send time of each request id."""
    p = s.producer(SERVERS)
    total = int(rate * seconds)
    msgs = [(f"{prefix}-{i:08d}", s.request(i, rows[i % len(rows)], prefix=prefix)) for i in range(total)]  # fmt: skip
    sent: dict[str, float] = {}
    i = 0
    start = time.perf_counter()
    while i < total:
        due = min(total, int((time.perf_counter() - start) * rate))
        while i < due:
            rid, body = msgs[i]
            p.produce(topic, body, rid.encode())
            sent[rid] = time.perf_counter()
            i += 1
        p.poll(0)
        time.sleep(0.002)
    p.flush(30)
    return sent


def latencies(send_to: str, topic: str, rate: float, seconds: float, rows: list[list[float]], prefix: str, committed: bool) -> tuple[float, float, int]:  # fmt: skip
    """p50 and p99 (ms) from producing to ``send_to`` to the reader's consume from ``topic``."""
    arrived: dict[str, float] = {}
    stop = threading.Event()
    c = Consumer(
        {
            **servers_conf(SERVERS),
            "group.id": f"lat-{prefix}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }
    )
    c.subscribe([topic])
    quiet = time.monotonic()
    while time.monotonic() - quiet < 1.0:  # joined and caught up before the first request
        if c.consume(5000, 0.2) or not c.assignment():
            quiet = time.monotonic()

    def read() -> None:
        while not stop.is_set():
            for m in c.consume(1000, 0.05):
                if m.error() is None:
                    key = (m.key() or b"").decode()
                    if key.startswith(prefix):
                        arrived.setdefault(key, time.perf_counter())

    reader = threading.Thread(target=read)
    reader.start()
    sent = paced(send_to, rate, seconds, rows, prefix)
    s.wait_for(lambda: len(arrived) >= len(sent), 60)
    stop.set()
    reader.join()
    c.close()
    ms = sorted((arrived[k] - t) * 1000 for k, t in sent.items())
    return statistics.median(ms), ms[int(0.99 * (len(ms) - 1))], len(ms)


def ray_memory() -> tuple[float, float, int]:
    """RSS and PSS (MiB) summed over the driver's descendants (every Ray process)."""
    rss = pss = 0.0
    procs = psutil.Process().children(recursive=True)
    for p in procs:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss / 2**20
        pss += getattr(info, "pss", info.rss) / 2**20
    return rss, pss, len(procs)


def backlog(topic: str, n: int, rows: list[list[float]], transactional: bool) -> Any:
    """``n`` requests on ``topic``; with ``transactional`` they stay invisible to read_committed
    readers until the returned producer's ``commit_transaction`` (a backlog that appears at once).
    """
    from confluent_kafka import Producer

    conf: dict[str, Any] = {**servers_conf(SERVERS), "linger.ms": 5}
    if transactional:
        conf |= {"transactional.id": f"backlog-{time.time_ns()}", "transaction.timeout.ms": 600_000}
    p = Producer(conf)
    if transactional:
        p.init_transactions(30)
        p.begin_transaction()
    for i in range(n):
        while True:
            try:
                p.produce(topic, s.request(i, rows[i % len(rows)]), f"r-{i:08d}".encode())
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    return p


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total


def run_plain(delivery: str, topic: str, n: int, batch: int, art: Path) -> tuple[float, float]:
    """The plain process's rate (result timestamps) and CPU us per request."""
    out = child("plain", SERVERS, REQ, topic, f"g-{topic}", str(n), str(batch), delivery, str(art))
    rate = rate_from_timestamps(topic, n)
    print(f"plain {delivery} -> {topic}: {rate:,.0f}/s, {out['cpu_s'] / n * 1e6:.1f} us CPU/request", flush=True)  # fmt: skip
    return rate, out["cpu_s"] / n * 1e6


def means(text: str) -> dict[str, float]:
    """Mean commit time (ms) and rows per batch from a replica's metrics text."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(("veritas_serving_commit_seconds_", "veritas_serving_batch_rows_")):
            key = name.split("{")[0] + ("" if 'path="kafka"' in name or "{" not in name else "?")
            values[key] = values.get(key, 0.0) + float(value)
    c = values.get("veritas_serving_commit_seconds_count", 0.0) or 1.0
    b = values.get("veritas_serving_batch_rows_count", 0.0) or 1.0
    return {
        "commit_ms_mean": round(
            values.get("veritas_serving_commit_seconds_sum", 0.0) / c * 1000, 2
        ),
        "rows_per_batch_mean": round(values.get("veritas_serving_batch_rows_sum", 0.0) / b, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--light-rate", type=float, default=1000.0, help="a second latency rate")
    ap.add_argument(
        "--sweep", default="50,200,500,2000", help="ingress max_batch values ('' skips)"
    )
    args = ap.parse_args()
    n, batch = args.n, args.batch
    shutil.rmtree(DATA, ignore_errors=True)
    broker("start")
    from serving import control

    try:
        art = s.cached_artifacts([1])[0]
        spec = s.signed_spec(art, signing.generate_private_key(), "1.0.0")
        sizes = [int(b) for b in args.sweep.split(",") if b]
        outs = ["res.plain.a", "res.plain.alo", "res.plain.b", "res.serve", "res.bridge.a", "res.bridge.b"]  # fmt: skip
        outs += [f"res.sweep.{b}" for b in sizes]
        s.create_topics(SERVERS, {REQ: 2, REQ_SERVE: 2, HOP: 2, **dict.fromkeys(outs, 2)})
        rows = s.holdout_rows(2000)
        backlog(REQ, n, rows, transactional=False)
        pending = backlog(REQ_SERVE, n, rows, transactional=True)
        limit = child("torch", str(n), str(batch), str(art))["rate"]
        print(f"torch on tensors {limit:,.0f}/s", flush=True)
        plain_a = run_plain("exactly_once", "res.plain.a", n, batch, art)
        plain_alo = run_plain("at_least_once", "res.plain.alo", n, batch, art)
        sweep = []
        for b in sizes:  # serving's own ingress loop in a plain process, per max_batch
            out = child("ingress", SERVERS, REQ, f"res.sweep.{b}", str(n), str(b), json.dumps(spec))
            sweep.append([b, round(rate_from_timestamps(f"res.sweep.{b}", n)), round(out["cpu_s"] / n * 1e6, 1)])  # fmt: skip
            print(f"ingress max_batch {b}: {sweep[-1][1]:,}/s, {sweep[-1][2]} us CPU/request", flush=True)  # fmt: skip
        facts = control.start_ray()
        print(f"ray: {facts}", flush=True)
        ingress = {"bootstrap_servers": SERVERS, "client": sasl_conf(), "requests_topic": REQ_SERVE, "results_topic": "res.serve", "group_id": "g-serve", "max_batch": batch}  # fmt: skip
        serving = control.Serving(control.settings_dict(ingress=ingress))
        t0 = time.perf_counter()
        serving.deploy({"models": {"digits": {"production": spec}}})
        deploy_s = time.perf_counter() - t0
        replica = next(iter(serving.replicas().values()))
        time.sleep(3)
        ray_pids = [p.pid for p in psutil.Process().children(recursive=True)]
        cpu_replica, cpu_ray = cpu_seconds([replica["pid"]]), cpu_seconds(ray_pids)
        pending.commit_transaction(60)  # the backlog appears at once
        serve_rate = rate_from_timestamps("res.serve", n)
        serve_cpu = (cpu_seconds([replica["pid"]]) - cpu_replica) / n * 1e6
        ray_cpu = (cpu_seconds(ray_pids) - cpu_ray) / n * 1e6
        print(f"serve {serve_rate:,.0f}/s, replica {serve_cpu:.1f} us CPU/request, all Ray {ray_cpu:.1f} (deploy {deploy_s:.1f}s)", flush=True)  # fmt: skip
        plain_b = run_plain("exactly_once", "res.plain.b", n, batch, art)  # Ray up, idle
        bridged = {}
        for block, topic in ((batch, "res.bridge.a"), (4 * batch, "res.bridge.b")):
            bridge(serving.handle(), SERVERS, REQ, topic, n, block)
            bridged[block] = rate_from_timestamps(topic, n)
            print(f"bridge, {block}-row blocks: {bridged[block]:,.0f}/s", flush=True)
        plain_rate = (plain_a[0] + plain_b[0]) / 2
        half = serve_rate / 2
        hop = latencies(HOP, HOP, half, args.latency_seconds, rows, "hop", committed=False)
        lat = latencies(REQ_SERVE, "res.serve", half, args.latency_seconds, rows, "lat", committed=True)  # fmt: skip
        print(f"latency at {half:,.0f}/s: serve {lat}, hop {hop}", flush=True)
        light = args.light_rate
        hop_l = latencies(HOP, HOP, light, args.latency_seconds, rows, "hopl", committed=False)
        lat_l = latencies(REQ_SERVE, "res.serve", light, args.latency_seconds, rows, "latl", committed=True)  # fmt: skip
        print(f"latency at {light:,.0f}/s: serve {lat_l}, hop {hop_l}", flush=True)
        time.sleep(5)
        rss, pss, nprocs = ray_memory()
        status = next(iter(serving.replicas().values()))
        status["metrics"] = means(serving.handle().metrics_text.remote().result().decode())
        print(f"replica: {status['metrics']}", flush=True)
    finally:
        control.stop_ray()
        broker("stop")
    table = [
        ["Kafka->Serve->Kafka predictions/s (1 replica, exactly-once)", round(serve_rate), f"plain process {plain_a[0]:,.0f} / {plain_b[0]:,.0f}/s (before / after Ray)", round(serve_rate / plain_rate, 2), ">= 0.8"],
        ["CPU per request, us (replica / all Ray processes)", f"{serve_cpu:.1f} / {ray_cpu:.1f}", f"plain process {plain_a[1]:.1f} / {plain_b[1]:.1f}", round(ray_cpu / ((plain_a[1] + plain_b[1]) / 2), 2), "reported"],
        [f"bridge process, {batch} / {4 * batch}-row blocks through a handle", f"{bridged[batch]:,.0f} / {bridged[4 * batch]:,.0f}", f"in-replica ingress {serve_rate:,.0f}/s", f"{bridged[batch] / serve_rate:.2f} / {bridged[4 * batch] / serve_rate:.2f}", "reported"],
        ["the same rate, against in-process torch on tensors", round(serve_rate), f"torch {limit:,.0f}/s", round(serve_rate / limit, 3), "reported"],
        ["transaction per batch: plain exactly-once vs at-least-once", round(plain_a[0]), f"at-least-once {plain_alo[0]:,.0f}/s", round(plain_a[0] / plain_alo[0], 2), "reported"],
        [f"request->result p50 / p99 ms at {half:,.0f}/s", f"{lat[0]:.1f} / {lat[1]:.1f}", f"raw hop {hop[0]:.1f} / {hop[1]:.1f}", f"{lat[0] / hop[0]:.1f} / {lat[1] / hop[1]:.1f}", "reported"],
        [f"request->result p50 / p99 ms at {light:,.0f}/s", f"{lat_l[0]:.1f} / {lat_l[1]:.1f}", f"raw hop {hop_l[0]:.1f} / {hop_l[1]:.1f}", f"{lat_l[0] / hop_l[0]:.1f} / {lat_l[1] / hop_l[1]:.1f}", "reported"],
        [f"idle RSS of Ray + 1 torch replica ({nprocs} processes)", f"{rss:,.0f} MiB (PSS {pss:,.0f})", "3.5 GiB - 0.85 GiB core = 2,714 MiB", round(rss / 2714, 2), "<= 1.0"],
    ]  # fmt: skip
    headers = ["measure", "value", "baseline (same run)", "ratio", "target"]
    print(markdown_table(headers, table))
    print(markdown_table(["ingress max_batch (plain process)", "predictions/s", "CPU us/request"], sweep))  # fmt: skip
    RESULTS_DIR.mkdir(exist_ok=True)
    record = {"n": n, "batch": batch, "table": table, "sweep": sweep, "ray": facts, "deploy_s": deploy_s, "replica": status, "at": time.time()}  # fmt: skip
    (RESULTS_DIR / "serving_throughput.json").write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()

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

from bench._stack import RESULTS_DIR, markdown_table  # noqa: E402
from ml import signing  # noqa: E402
from tests import serving_support as s  # noqa: E402

PORT, DATA = 39642, ROOT / "var" / "bench-serving"
SERVERS = f"127.0.0.1:{PORT}"
REQ, HOP = "bench.requests", "bench.hop"
BASELINES = str(Path(__file__).with_name("_serving_baselines.py"))


def broker(action: str) -> None:
    env = {**os.environ, "KAFKA_PORT": str(PORT), "KAFKA_DATA_DIR": str(DATA / "kafka")}
    subprocess.run(["bash", str(ROOT / "infra/kafka/kafka.sh"), action], env=env, check=True)


def rate_from_timestamps(topic: str, n: int, timeout_s: float = 300) -> float:
    """Results/s between the first and the last result's timestamp, once all ``n`` are in."""
    c = Consumer(
        {
            "bootstrap.servers": SERVERS,
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
    sent: dict[str, float] = {}
    tick, i = 0.002, 0
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        while i < due:
            rid = f"{prefix}-{i:08d}"
            p.produce(topic, s.request(i, rows[i % len(rows)], prefix=prefix), rid.encode())
            sent[rid] = time.perf_counter()
            i += 1
        p.poll(0)
        time.sleep(tick)
    p.flush(30)
    return sent


def latencies(send_to: str, topic: str, rate: float, seconds: float, rows: list[list[float]], prefix: str, committed: bool) -> tuple[float, float, int]:  # fmt: skip
    """p50 and p99 (ms) from producing to ``send_to`` to the reader's consume from ``topic``."""
    arrived: dict[str, float] = {}
    stop = threading.Event()
    c = Consumer(
        {
            "bootstrap.servers": SERVERS,
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    args = ap.parse_args()
    n, batch = args.n, args.batch
    shutil.rmtree(DATA, ignore_errors=True)
    broker("start")
    from serving import control

    try:
        art = s.cached_artifacts([1])[0]
        key = signing.generate_private_key()
        spec = s.signed_spec(art, key, "1.0.0")
        topics = ["res.plain.eos", "res.plain.alo", "res.serve"]
        s.create_topics(SERVERS, {REQ: 2, HOP: 2, **dict.fromkeys(topics, 2)})
        rows = s.holdout_rows(2000)
        t0 = time.perf_counter()
        s.produce_all(SERVERS, REQ, ((f"r-{i:08d}".encode(), s.request(i, rows[i % 2000])) for i in range(n)))  # fmt: skip
        print(f"{n} requests produced in {time.perf_counter() - t0:.1f}s", flush=True)
        limit = child("torch", str(n), str(batch), str(art))["rate"]
        print(f"torch limit {limit:,.0f}/s", flush=True)
        plain: dict[str, float] = {}
        for delivery, topic in (("exactly_once", "res.plain.eos"), ("at_least_once", "res.plain.alo")):  # fmt: skip
            child(
                "plain", SERVERS, REQ, topic, f"g-{topic}", str(n), str(batch), delivery, str(art)
            )
            plain[delivery] = rate_from_timestamps(topic, n)
            print(f"plain {delivery} {plain[delivery]:,.0f}/s", flush=True)
        facts = control.start_ray()
        print(f"ray: {facts}", flush=True)
        ingress = {"bootstrap_servers": SERVERS, "requests_topic": REQ, "results_topic": "res.serve", "group_id": "g-serve", "max_batch": batch}  # fmt: skip
        serving = control.Serving(control.settings_dict(ingress=ingress))
        t0 = time.perf_counter()
        serving.deploy({"models": {"digits": {"production": spec}}})
        deploy_s = time.perf_counter() - t0
        serve_rate = rate_from_timestamps("res.serve", n)
        print(f"serve {serve_rate:,.0f}/s (deploy {deploy_s:.1f}s)", flush=True)
        half = serve_rate / 2
        hop = latencies(HOP, HOP, half, args.latency_seconds, rows, "hop", committed=False)
        lat = latencies(REQ, "res.serve", half, args.latency_seconds, rows, "lat", committed=True)
        print(f"latency at {half:,.0f}/s: serve {lat}, hop {hop}", flush=True)
        time.sleep(5)
        rss, pss, nprocs = ray_memory()
        status = next(iter(serving.replicas().values()))
    finally:
        control.stop_ray()
        broker("stop")
    table = [
        [
            "Kafka->Serve->Kafka predictions/s (1 replica, exactly-once)",
            round(serve_rate),
            f"plain process {plain['exactly_once']:,.0f}/s",
            round(serve_rate / plain["exactly_once"], 2),
            ">= 0.8",
        ],
        [
            "the same, against in-process torch on tensors",
            round(serve_rate),
            f"torch {limit:,.0f}/s",
            round(serve_rate / limit, 3),
            "reported",
        ],
        [
            "cost of a transaction per batch (plain process)",
            round(plain["exactly_once"]),
            f"at-least-once {plain['at_least_once']:,.0f}/s",
            round(plain["exactly_once"] / plain["at_least_once"], 2),
            "reported",
        ],
        [
            f"request->result p50 / p99 ms at {half:,.0f}/s",
            f"{lat[0]:.1f} / {lat[1]:.1f}",
            f"raw hop {hop[0]:.1f} / {hop[1]:.1f}",
            f"{lat[0] / hop[0]:.1f} / {lat[1] / hop[1]:.1f}",
            "reported",
        ],
        [
            f"idle RSS of Ray + 1 torch replica ({nprocs} processes)",
            f"{rss:,.0f} MiB (PSS {pss:,.0f})",
            "3.5 GiB - 0.85 GiB core = 2,714 MiB",
            round(rss / 2714, 2),
            "<= 1.0",
        ],
    ]
    headers = ["measure", "value", "baseline (same run)", "ratio", "target"]
    print(markdown_table(headers, table))
    RESULTS_DIR.mkdir(exist_ok=True)
    record = {"n": n, "batch": batch, "table": table, "ray": facts, "deploy_s": deploy_s, "replica": status, "at": time.time()}  # fmt: skip
    (RESULTS_DIR / "serving_throughput.json").write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()

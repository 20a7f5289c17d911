"""A private local stack for benchmarks: its own ports and data dir (var/bench), so it never
collides with a developer stack (var/, 9092...) or the test stacks (var/test*, 29092...).

The variables are put into os.environ before any Settings is built, so the worker processes that
`services.up` starts inherit them, exactly like tests/conftest.py does with TEST_ENV.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from config.settings import Settings  # noqa: E402

# Raw clients' configurations: the tests' helpers (the super user unless a principal is named).
from tests.helpers import kafka_conf  # noqa: E402

BENCH_ENV = {
    "VERITAS_VAR_DIR": str(ROOT / "var" / "bench"),
    "VERITAS_KAFKA_PORT": "39092",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:39092",
    "VERITAS_PG_PORT": "35433",
    "VERITAS_API_PORT": "38000",
    "VERITAS_METRICS_PORT_BASE": "39101",
    # The write-path and memory benches measure the core stack (bench/serving_memory.py: with).
    "VERITAS_SERVING_ENABLED": "false",
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def bench_settings(env: dict[str, str] | None = None) -> Settings:
    os.environ.update(env or BENCH_ENV)
    return Settings()


def _raise_on_sigterm(*_: object) -> None:
    raise SystemExit(143)  # so the `finally` below stops the stack


@contextmanager
def bench_stack(env: dict[str, str] | None = None, label: str = "bench") -> Iterator[Settings]:
    """down (leftovers) -> wipe the var dir -> up -> yield -> down, even on error or Ctrl-C."""
    from veritas import services

    env = env or BENCH_ENV
    s = bench_settings(env)
    assert s.var_dir == Path(env["VERITAS_VAR_DIR"]), s.var_dir
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        services.down(s)
        shutil.rmtree(s.var_dir, ignore_errors=True)
        t0 = time.monotonic()
        services.up(s)
        print(f"[{label}] stack up in {time.monotonic() - t0:.1f}s under {s.var_dir}", flush=True)
        yield s
    finally:
        try:
            services.down(s)
        finally:
            signal.signal(signal.SIGTERM, previous)
        print(f"[{label}] stack down", flush=True)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


# ------------------------------------------------------------------- the stack's own processes

COMPONENTS = ("kafka", "postgres", "command-handler", "relay", "projector", "api")


def stack_processes(s: Settings) -> dict[str, list[Any]]:
    """psutil processes of each component, found by the pids its supervisor reports (never by
    name), each with all its children. Every command-handler instance counts as the handler."""
    import psutil

    from veritas import services

    roots: dict[str, list[int | None]] = {name: [] for name in COMPONENTS}
    for name, pid in services.service_pids(s).items():
        kind = "command-handler" if name.startswith("command-handler") else name
        roots.setdefault(kind, []).append(pid)
    out: dict[str, list[Any]] = {}
    for name, pids in roots.items():
        procs: list[Any] = []
        for pid in pids:
            if pid is None:
                continue
            try:
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        out[name] = procs
    return out


def cpu_seconds(procs: dict[str, list[Any]]) -> dict[str, float]:
    """user+system CPU seconds used so far by each component (exited processes count 0)."""
    import psutil

    out: dict[str, float] = {}
    for name, plist in procs.items():
        total = 0.0
        for p in plist:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        out[name] = total
    return out


def wait_quiet(s: Settings, max_s: float = 60.0, threshold: float = 0.05) -> float:
    """Wait until the whole stack uses under `threshold` CPU-seconds per second (backlogs drained).
    Returns the seconds waited."""
    procs = stack_processes(s)
    t0 = time.monotonic()
    before = sum(cpu_seconds(procs).values())
    while time.monotonic() - t0 < max_s:
        time.sleep(1.0)
        now = sum(cpu_seconds(procs).values())
        if now - before < threshold:
            break
        before = now
    return time.monotonic() - t0


def scrape_metrics(url: str, prefixes: Sequence[str]) -> dict[str, float]:
    """Prometheus text-format samples whose names start with one of `prefixes`."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith(tuple(prefixes)):
            with suppress(ValueError):
                out[name] = float(value)
    return out


def command_envelope(
    command_id: str,
    ctype: str,
    schema_version: int,
    payload: dict[str, Any],
    issued_at: str | None = None,
) -> bytes:
    """A command as DESIGN's envelope, encoded for Kafka (issued now, unless told otherwise: the
    handler refuses an issued_at outside its window)."""
    doc = {
        "command_id": command_id,
        "type": ctype,
        "schema_version": schema_version,
        "issued_at": issued_at or datetime.now(UTC).isoformat(),
        "payload": payload,
    }
    return json.dumps(doc).encode()


def producer(s: Settings, **extra: Any) -> Producer:
    conf = {**kafka_conf(s), "enable.idempotence": True, **extra}
    return Producer(conf)


def produce(
    p: Producer, topic: str, key: str | bytes, value: bytes, headers: list[Any] | None
) -> None:
    while True:
        try:
            p.produce(topic, key=key, value=value, headers=headers)
            p.poll(0)
            return
        except BufferError:
            p.poll(0.05)


def consumer_at_end(s: Settings, topics: list[str]) -> Consumer:
    """A read_committed consumer assigned to the current end of every partition of `topics`."""
    c = Consumer(
        {
            **kafka_conf(s),
            "group.id": f"bench-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    assign = []
    for topic in topics:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        for p in parts:
            high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            assign.append(TopicPartition(topic, p, high))
    c.assign(assign)
    return c

"""Helpers of the serving tests and bench (not a test module).

``train_artifacts`` trains small digits MLPs in a child process (``python -m
tests.serving_support DIR SEED...``), so a caller that must not import torch (the bench's driver)
can make them too; ``signed_spec`` signs one (no torch).
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ml import signing
from ml.util import sha256_file
from tests.helpers import sasl_conf, servers_conf

ROOT = Path(__file__).resolve().parents[1]
# Training is deterministic (same seed, same bytes), so artifacts are made once and kept here.
CACHE = ROOT / "var" / "serving-artifacts"


def cached_artifacts(seeds: Iterable[int], epochs: int = 2) -> list[Path]:
    """Artifacts for ``seeds`` under ``var/serving-artifacts`` (read them; copy to change them)."""
    return train_artifacts(CACHE / f"epochs{epochs}", seeds, epochs)


def train_artifacts(directory: Path, seeds: Iterable[int], epochs: int = 3) -> list[Path]:
    """One artifact directory per seed under ``directory`` (trained in a child process)."""
    seeds = list(seeds)
    dirs = [directory / f"seed{s}" for s in seeds]
    directory.mkdir(parents=True, exist_ok=True)
    # `make test` runs tests/unit beside the stack tests: one session trains, the other waits.
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((d / "model.safetensors").exists() for d in dirs):
            return dirs
        subprocess.run(
            [sys.executable, "-m", "tests.serving_support", str(directory), str(epochs)]
            + [str(s) for s in seeds],
            check=True,
            cwd=ROOT,
            timeout=600,
        )
    return dirs


def signed_spec(
    artifact_dir: Path,
    key: Ed25519PrivateKey,
    version: str,
    approved_for: Iterable[str] = ("staging", "production"),
    stage: str = "production",
) -> dict[str, Any]:
    """A ``user_config`` version spec for ``artifact_dir``, signed by ``key``."""
    model = artifact_dir / "model.safetensors"
    manifest = json.loads((artifact_dir / "manifest.json").read_text(encoding="utf-8"))
    sha = sha256_file(model)
    return {
        "version": version,
        "artifact": str(model),
        "sha256": sha,
        "signature": signing.sign(key, signing.artifact_message(sha, manifest)),
        "public_key": signing.public_key_to_pem(key.public_key()).decode("ascii"),
        "approved_for": list(approved_for),
        "stage": stage,
    }


def holdout_rows(n: int, seed: int = 0) -> list[list[float]]:
    """Raw digits feature rows (no torch): ``n`` rows, cycling through the dataset."""
    from ml import datasets

    rows = [list(map(float, r)) for r in datasets.load("sklearn:digits").X]
    start = seed % len(rows)
    return [rows[(start + i) % len(rows)] for i in range(n)]


def request(i: int, row: list[float], model: str = "digits", prefix: str = "r") -> bytes:
    return orjson.dumps({"request_id": f"{prefix}-{i:08d}", "model_name": model, "features": row})


def wait_for(check: Any, timeout_s: float, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout_s} s")
        time.sleep(interval_s)


def _ingress(argv: list[str]) -> None:
    """Run serving's IngressLoop until killed (the delivery tests kill it with SIGKILL)."""
    from serving.host import ModelHost
    from serving.kafka_ingress import IngressConfig, IngressLoop
    from serving.runtime import set_threads

    set_threads(1)
    servers, req, res, group, tid, delivery, spec = argv
    host = ModelHost(warm_rows=8)
    host.apply({"models": {"digits": {"production": json.loads(spec)}}})
    cfg = IngressConfig.from_dict(
        {
            "bootstrap_servers": servers,
            "client": sasl_conf(),
            "requests_topic": req,
            "results_topic": res,
            "group_id": group,
            "transactional_id": tid,
            "delivery": delivery,
            "max_batch": 50,
            "session_timeout_ms": 3000,
        }
    )
    loop = IngressLoop(cfg, lambda: host.snapshot)
    loop.start()
    print("started", flush=True)
    while loop.healthy:
        time.sleep(0.1)
    print(f"stopped: {loop.error}", flush=True)


def _main(argv: list[str]) -> None:
    if argv[0] == "ingress":
        _ingress(argv[1:])
        return
    from ml import datasets, prepare
    from ml.train import Hyperparameters, save_artifact, train

    directory, epochs, seeds = Path(argv[0]), int(argv[1]), [int(s) for s in argv[2:]]
    snapshot = prepare.prepare(datasets.load("sklearn:digits"), seed=0)
    for seed in seeds:
        result = train(snapshot, Hyperparameters(epochs=epochs, seed=seed), device="cpu")
        save_artifact(result, directory / f"seed{seed}")


if __name__ == "__main__":
    _main(sys.argv[1:])


# --- Kafka helpers (confluent-kafka only) ---------------------------------------------------


def create_topics(servers: str, topics: dict[str, int]) -> None:
    """Create ``name -> partitions`` afresh (deleting any that exist)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**servers_conf(servers)})
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in topics if t in existing]
    if doomed:
        for f in admin.delete_topics(doomed, operation_timeout=30).values():
            f.result()
        wait_for(lambda: not set(doomed) & set(admin.list_topics(timeout=10).topics), 30)
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items()],
        operation_timeout=30,
    )
    for f in futures.values():
        f.result()


def producer(servers: str) -> Any:
    from confluent_kafka import Producer

    return Producer({**servers_conf(servers), "linger.ms": 2, "enable.idempotence": True})


def produce_all(servers: str, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> int:
    p = producer(servers)
    n = 0
    for key, value in messages:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.01)
        n += 1
        if n % 1000 == 0:
            p.poll(0)
    p.flush(30)
    return n


class Results:
    """A read_committed reader of a results topic that keeps every record it saw."""

    def __init__(self, servers: str, topic: str, group: str | None = None) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer(
            {
                **servers_conf(servers),
                "group.id": group or f"results-reader-{time.time_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.subscribe([topic])
        self.records: list[dict[str, Any]] = []
        self.arrival: list[float] = []

    def poll(self, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        got = 0
        while time.monotonic() < deadline:
            for m in self.consumer.consume(1000, 0.05):
                if m.error() is None:
                    self.records.append(json.loads(m.value()))
                    self.arrival.append(time.perf_counter())
                    got += 1
        return got

    def until(self, ids: set[str], timeout_s: float) -> set[str]:
        """Poll until every id in ``ids`` has a result (or the timeout); the ids still missing."""
        deadline = time.monotonic() + timeout_s
        missing = set(ids) - {r["request_id"] for r in self.records}
        while missing and time.monotonic() < deadline:
            before = len(self.records)
            self.poll(0.5)
            missing -= {r["request_id"] for r in self.records[before:]}
        return missing

    def close(self) -> None:
        self.consumer.close()


class Stream:
    """Steady requests for `model` on `topic` from a thread; each request's partition and offset
    kept (a result's order is checked against where its request landed)."""

    def __init__(
        self, servers: str, topic: str, rate: float, rows: list[list[float]], model: str = "digits"
    ) -> None:
        self.servers, self.topic, self.rate, self.rows, self.model = (
            servers,
            topic,
            rate,
            rows,
            model,
        )
        self.prefix = uuid.uuid4().hex[:8]
        self.placed: dict[str, tuple[int, int]] = {}
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def ids(self) -> set[str]:
        return {f"{self.prefix}-{i:08d}" for i in range(self.sent)}

    def _run(self) -> None:
        p = producer(self.servers)

        def placed(err: Any, msg: Any) -> None:
            if err is None:
                self.placed[msg.key().decode()] = (msg.partition(), msg.offset())

        start = time.perf_counter()
        while not self._stop.is_set():
            while self.sent < int((time.perf_counter() - start) * self.rate):
                i = self.sent
                body = request(i, self.rows[i % len(self.rows)], self.model, self.prefix)
                p.produce(self.topic, body, f"{self.prefix}-{i:08d}".encode(), on_delivery=placed)
                self.sent += 1
            p.poll(0.01)
        p.flush(30)

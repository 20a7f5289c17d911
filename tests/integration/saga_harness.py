"""Test harness for the saga runtime: the example saga as a real process (started, killed with
SIGKILL, stopped with SIGTERM), its Prometheus metrics, and a reader of the commands it sends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from config.settings import ROOT, Settings
from tests.helpers import kafka_conf

SLOT = int(os.environ.get("TEST_SLOT", "0"))
METRICS_PORT_BASE = 19600 + 10 * SLOT  # away from the workers' ports of every test slot


class SagaProcess:
    """`python -m tests.integration.example_saga` with the test settings."""

    def __init__(self, s: Settings, name: str = "example") -> None:
        self.s = s
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = s.log_dir / f"saga-{name}.log"
        self.started_at = 0.0
        self.log_offset = 0
        self.started_wall = 0.0

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "EXAMPLE_SAGA_NAME": self.name,
            "VERITAS_SAGA_METRICS_PORT_BASE": str(METRICS_PORT_BASE),
        }

    def start(self) -> float:
        assert self.proc is None or self.proc.poll() is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.log_offset = log.tell()
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.example_saga"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self.started_at

    def ensure_running(self) -> None:
        if not self.running:
            self.start()
        self.wait_ready()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.terminate(30)

    def wait_exit(self, timeout_s: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def startup(self) -> dict[str, float]:
        """Seconds from the spawn to this run's log lines: the faust worker starting (imports and
        set-up done), the partitions assigned (the group joined) and the first event handled."""
        text = self.log_path.read_bytes()[self.log_offset :].decode(errors="replace")
        marks = {
            "worker_s": "faust worker starting",
            "assigned_s": "partitions assigned",
            "first_event_s": "first event handled",
        }
        out: dict[str, float] = {}
        for line in text.splitlines():
            with contextlib.suppress(ValueError, KeyError):
                rec = json.loads(line)
                for key, marker in marks.items():
                    if marker in rec["message"] and key not in out:
                        at = datetime.strptime(rec["time"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                        out[key] = round(at - self.started_wall, 2)
        return out

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample on the process's /metrics, keyed by name and labels (without `saga`)."""
        url = f"http://127.0.0.1:{METRICS_PORT_BASE}/metrics"
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "saga"))
                out[(sample.name, labels)] = sample.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        want = tuple(sorted(labels.items()))
        return self.metrics().get((name, want), 0.0)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until its metrics answer with its pid (the faust worker may still be joining)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"saga exited {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError):
                if self.metrics().get(
                    (
                        "veritas_worker_info",
                        (("name", f"saga-{self.name}"), ("pid", str(self.proc.pid))),
                    )
                ):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"saga not ready; see {self.log_path}")

    def wait_metric(
        self, name: str, at_least: float, timeout_s: float = 60.0, **labels: str
    ) -> float:
        deadline = time.monotonic() + timeout_s
        value = 0.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                value = self.metric(name, **labels)
                if value >= at_least:
                    return value
            time.sleep(0.1)
        raise AssertionError(f"{name}{labels} = {value} < {at_least} after {timeout_s}s")


@dataclass(frozen=True)
class Sent:
    command_id: str
    type: str
    payload: dict[str, Any]
    headers: dict[str, bytes]
    seen_at: float  # monotonic, when this reader got it
    produced_at: float  # wall clock (s), the record's CreateTime: when the saga sent it


class CommandReader:
    """Reads the command topics from where they ended when it was made."""

    def __init__(self, s: Settings, topics: tuple[str, ...] = ("registry.commands",)) -> None:
        self.c = Consumer(
            {
                **kafka_conf(s),
                "group.id": f"t-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        start: list[TopicPartition] = []
        for topic in topics:
            for p in self.c.list_topics(topic, timeout=10).topics[topic].partitions:
                tp = TopicPartition(topic, p)
                tp.offset = self.c.get_watermark_offsets(tp, timeout=10)[1]
                start.append(tp)
        self.c.assign(start)
        self.sent: list[Sent] = []

    def poll(self, seconds: float = 0.2) -> None:
        for msg in self.c.consume(1000, seconds):
            if msg.error():
                continue
            doc = json.loads(msg.value())
            headers = {k: v or b"" for k, v in (msg.headers() or [])}
            produced_at = msg.timestamp()[1] / 1000
            self.sent.append(
                Sent(
                    doc["command_id"],
                    doc["type"],
                    doc["payload"],
                    headers,
                    time.monotonic(),
                    produced_at,
                )
            )

    def wait_for(self, ids: set[str], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not ids <= self.ids():
            self.poll()
        missing = ids - self.ids()
        assert not missing, f"{len(missing)} of {len(ids)} commands never arrived"

    def ids(self) -> set[str]:
        return {x.command_id for x in self.sent}

    def count(self, ids: set[str]) -> int:
        return sum(1 for x in self.sent if x.command_id in ids)

    def close(self) -> None:
        self.c.close()


def record_measurement(s: Settings, name: str, value: Any) -> None:
    """Measurements go to var/test<slot>/saga_measurements.json (and the test's output)."""
    path: Path = s.var_dir / "saga_measurements.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=2))
    print(f"MEASURED {name}: {value}")

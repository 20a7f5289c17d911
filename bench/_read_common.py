"""Shared parts of the read-side benchmark (bench/read_side.py): envelopes, CPU meter, history load."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
import psycopg
from _stack import (
    COMPONENTS,
    command_envelope,
    percentile,
    produce,
    producer,
    stack_processes,
)

from config.settings import Settings

COMMANDS_TOPIC = "registry.commands"
SCRATCH_TOPIC = "bench.read-latency"
TEXT = "Benchmark model registered by bench/read_side.py; the text only gives the event a size. "
TARGETS = {"rebuild": 0.3, "api": 0.6, "latency": 5.0}


# ---------------------------------------------------------------------------------------- helpers


def register_envelope(command_id: str, name: str) -> bytes:
    payload = {
        "name": name,
        "description": TEXT,
        "intended_use": "read-side measurement",
        "limitations": "none: synthetic",
        "tags": {"bench": "read_side", "team": f"t{hash(name) % 7}"},
    }
    return command_envelope(command_id, "RegisterModel", 2, payload)


def update_envelope(command_id: str, name: str) -> bytes:
    payload = {"name": name, "description": TEXT + "(updated)", "tags": {"reviewed": "yes"}}
    return command_envelope(command_id, "UpdateModelMetadata", 1, payload)


def git_state() -> dict[str, Any]:
    """The commit measured, and the core files that differed from it (the tree may be dirty)."""
    root = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [line[3:] for line in git("status", "--porcelain", "-uno").splitlines()]
    return {"head": git("rev-parse", "--short", "HEAD"), "modified": dirty}


def stats_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
    }


class CpuMeter:
    """CPU seconds of each stack component and of this process between start() and stop().

    The process tree of each component is re-read every 0.25 s, so Postgres backends that start
    (and end) during the window count too (a backend that lives under 0.25 s may be missed)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.me = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        for name, plist in stack_processes(self.s).items():
            for p in plist:
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                key = (name, p.pid)
                if key not in self.first:
                    self.first[key] = t.user + t.system if self.initial else 0.0
                self.last[key] = t.user + t.system

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def start(self) -> None:
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.initial = True
        self._sample()
        self.initial = False  # processes first seen later started inside the window
        me = self.me.cpu_times()
        self.me0 = me.user + me.system
        self.t0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sample()
        wall = time.monotonic() - self.t0
        me = self.me.cpu_times()
        used: dict[str, float] = dict.fromkeys(COMPONENTS, 0.0)
        for (name, pid), last in self.last.items():
            used[name] = used.get(name, 0.0) + last - self.first[(name, pid)]
        used["bench client"] = me.user + me.system - self.me0
        used = {k: round(v, 2) for k, v in used.items()}
        return {
            "wall_s": round(wall, 2),
            "cpu_s": used,
            "cores": round(sum(used.values()) / wall, 2),
        }


# ------------------------------------------------------------------------------ 1. load + rebuild


def read_model_counts(conn: psycopg.Connection, schema: str) -> tuple[int, int, int, int]:
    """(results, accepted results, events those results produced, rows in the audit log)"""
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE status = 'accepted'),"
        f" coalesce(sum(jsonb_array_length(events)) FILTER (WHERE status = 'accepted'), 0),"
        f" (SELECT count(*) FROM {schema}.rm_audit_log) FROM {schema}.rm_command_status"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def load_history(s: Settings, token: str, n: int, updates: int, timeout_s: float) -> dict[str, Any]:
    prefix = f"rb{uuid.uuid4().hex[:6]}-"
    headers = [("authorization", f"Bearer {token}".encode())]
    names = [f"{prefix}{i:06d}" for i in range(n)]
    p = producer(s, **{"linger.ms": 5})
    t0 = time.monotonic()
    for i, name in enumerate(names):
        produce(p, COMMANDS_TOPIC, name, register_envelope(f"{prefix}c{i:06d}", name), headers)
    step = max(1, n // updates) if updates else 1
    for j in range(updates):
        name = names[(j * step) % n]  # same key as its RegisterModel: same partition, after it
        produce(p, COMMANDS_TOPIC, name, update_envelope(f"{prefix}u{j:06d}", name), headers)
    left = p.flush(60)
    produce_s = time.monotonic() - t0
    total = n + updates
    print(f"[read] produced {total} commands in {produce_s:.1f}s ({left} unsent)", flush=True)
    counts = (0, 0, 0, 0)
    last_print = time.monotonic()
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        while time.monotonic() - t0 < timeout_s:
            counts = read_model_counts(conn, s.read_schema)
            results, _, events, audit = counts
            if results >= total and audit >= events:
                break
            if time.monotonic() - last_print > 10:
                print(f"[read]   projected {results}/{total} results, {audit} events", flush=True)
                last_print = time.monotonic()
            time.sleep(0.5)
    results, accepted, events, audit = counts
    return {
        "register_commands": n,
        "update_commands": updates,
        "produce_s": produce_s,
        "seconds_until_projected": time.monotonic() - t0,
        "results": results,
        "accepted": accepted,
        "events": events,
        "audit_rows": audit,
        "complete": results >= total and audit >= events and accepted == total,
        "names": names,
    }

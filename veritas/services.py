"""`veritas up|down|status`: start and stop the local stack. Every process we start is recorded by
pid under var/run and stopped by that pid (its process group), never by name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg

from projections.schema import migrate
from veritas import kafka, pg
from veritas.bootstrap import bootstrap
from veritas.settings import ROOT, Settings
from workers.base import handler_instance, handler_name, metrics_port


def _commands(s: Settings) -> dict[str, list[str]]:
    py = sys.executable
    return {
        **{
            handler_name(i): [py, "-m", "workers.command_handler", str(i)]
            for i in range(s.command_handlers)
        },
        "relay": [py, "-m", "workers.relay"],
        "projector": [py, "-m", "workers.projector"],
        "api": [
            py,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            s.api_host,
            "--port",
            str(s.api_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    }


def _pidfile(s: Settings, name: str) -> Path:
    return s.run_dir / f"{name}.pid"


def handler_pidfiles(s: Settings) -> list[Path]:
    """The recorded pids of command-handler instances 1.., whatever the setting is now."""
    return sorted(p for p in s.run_dir.glob("command-handler-*.pid") if handler_instance(p.stem))


def service_pid(s: Settings, name: str) -> int | None:
    try:
        value = int(_pidfile(s, name).read_text().strip())
        os.kill(value, 0)
    except (OSError, ValueError):
        return None
    cmdline = (
        Path(f"/proc/{value}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    )
    if name == "api":
        marker = "api.main:app"
    else:
        marker = (
            "workers.command_handler" if handler_instance(name) is not None else f"workers.{name}"
        )
    return value if marker in cmdline else None  # a reused pid is not ours


def _http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body of a 2xx answer, else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode(errors="replace") if 200 <= r.status < 300 else None
    except OSError:
        return None


def _service_healthy(s: Settings, name: str) -> bool:
    pid = service_pid(s, name)
    if pid is None:
        return False
    if name == "api":
        return _http_get(f"{s.api_url}/health") is not None
    # The worker names its pid on /metrics: a leftover process on the port is not this service.
    body = _http_get(f"http://127.0.0.1:{metrics_port(s, name)}/metrics")
    return body is not None and f'pid="{pid}"' in body


def prepare(s: Settings) -> None:
    """Start the infrastructure and create topics, tables and read models (idempotent)."""
    for d in (s.var_dir, s.run_dir, s.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    if s.kafka_embedded:
        kafka.broker(s, "start")
    if s.pg_embedded:
        pg.start(s)
    kafka.ensure_topics(s)
    container = bootstrap(s)
    _ = container.store  # creates the event-store tables
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        migrate(conn, s.read_schema)
    container.close()


def start_service(s: Settings, name: str) -> int:
    """Start one service in its own process group unless it already runs; returns its pid."""
    pid = service_pid(s, name)
    if pid is not None:
        return pid
    with (s.log_dir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            _commands(s)[name],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pidfile(s, name).write_text(str(proc.pid))
    return proc.pid


def wait_healthy(s: Settings, names: list[str], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending and time.monotonic() < deadline:
        pending = {n for n in pending if not _service_healthy(s, n)}
        time.sleep(0.3)
    if pending:
        raise RuntimeError(
            f"not healthy after {timeout_s:.0f}s: {sorted(pending)}; see {s.log_dir}"
        )


def up(s: Settings, timeout_s: float = 90.0) -> None:
    prepare(s)
    for name in _commands(s):
        start_service(s, name)
    wait_healthy(s, list(_commands(s)), timeout_s)


def kill_service(s: Settings, name: str) -> None:
    """SIGKILL a service's process group at once (crash tests)."""
    pid = service_pid(s, name)
    if pid is not None:
        os.killpg(pid, signal.SIGKILL)
        while not _gone(pid):
            time.sleep(0.01)


def _gone(pid: int) -> bool:
    # When this process started the service (tests do), it must reap it, or a zombie stays "alive".
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop_pid(pid: int, grace_s: float = 20.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    while not _gone(pid):
        time.sleep(0.05)


def down(s: Settings) -> None:
    # Handler instances beyond today's setting may still run from an `up` with a larger one.
    extra = [p.stem for p in handler_pidfiles(s)]
    for name in dict.fromkeys([*reversed(list(_commands(s))), *extra]):
        pid = service_pid(s, name)
        if pid is not None:
            _stop_pid(pid)
        _pidfile(s, name).unlink(missing_ok=True)
    if s.pg_embedded:
        pg.stop(s)
    if s.kafka_embedded:
        kafka.broker(s, "stop")


@dataclass(frozen=True)
class Health:
    component: str
    healthy: bool
    detail: str


def status(s: Settings) -> list[Health]:
    out = [
        Health("kafka", kafka.broker_ready(s), s.kafka_bootstrap_servers),
        Health("postgres", pg.is_ready(s.dsn), "embedded" if s.pg_embedded else "DATABASE_URL"),
    ]
    for name in _commands(s):
        pid = service_pid(s, name)
        out.append(Health(name, _service_healthy(s, name), f"pid {pid}" if pid else "not running"))
    return out

"""`veritas up|down|status`: the local stack under supervisord (infra.supervisor), which restarts a
crashed service with backoff: the embedded broker and Postgres, the command handlers, the relay,
the projector and the API. `down` stops it all through the supervisor."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import psycopg

from config.services import handler_name, metrics_port
from config.settings import Settings
from infra import anchors, health, kafka, keys, supervisor
from infra.postgres import server as pg
from projections.schema import migrate
from veritas.bootstrap import bootstrap


def _commands(s: Settings) -> dict[str, list[str]]:
    py = sys.executable
    return {
        **{
            handler_name(i): [py, "-m", "workers.command_handler", str(i)]
            for i in range(s.command_handlers)
        },
        "relay": [py, "-m", "workers.relay"],
        "projector": [py, "-m", "workers.projector"],
        "training-orchestrator": [py, "-m", "workers.training_orchestrator"],
        "training-steps": [py, "-m", "workers.training_steps"],
        "drift-monitor": [py, "-m", "workers.drift_monitor"],
        "retraining-orchestrator": [py, "-m", "workers.retraining_orchestrator"],
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


def _serving_commands(s: Settings) -> dict[str, list[str]]:
    """Serving: the deployment saga and the controller, which starts (or joins) Ray and Serve."""
    py = sys.executable
    return {
        "deployment-orchestrator": [py, "-m", "workers.deployment_orchestrator"],
        "serving-controller": [py, "-m", "workers.serving_controller"],
    }


def enabled(s: Settings) -> dict[str, list[str]]:
    """What `up` starts: every service, serving's only with settings.serving_enabled."""
    return {**_commands(s), **(_serving_commands(s) if s.serving_enabled else {})}


def programs(s: Settings) -> list[supervisor.Program]:
    """Everything the supervisor runs: the embedded broker and Postgres (when used) and the services."""
    out: list[supervisor.Program] = []
    if s.kafka_embedded:
        out.append(
            supervisor.Program("kafka", kafka.broker_command(s), 10, stopwaitsecs=60, startsecs=5)
        )
    if s.pg_embedded:
        command, user = pg.foreground(s)
        # SIGINT is Postgres's fast shutdown (SIGTERM would wait for every client to leave).
        out.append(supervisor.Program("postgres", command, 10, "INT", 60, user, startsecs=3))
    for name, command in _commands(s).items():
        out.append(supervisor.Program(name, command, 90 if name == "api" else 50))
    # Always configured (a test starts them on demand); Ray's shutdown needs its time.
    for name, command in _serving_commands(s).items():
        out.append(supervisor.Program(name, command, 60, stopwaitsecs=60, startsecs=5))
    return out


def service_pid(s: Settings, name: str) -> int | None:
    info = supervisor.info(s, name)
    return info.pid if info.state in ("STARTING", "RUNNING") else None


def service_pids(s: Settings) -> dict[str, int]:
    """The pid of every running program (services and the embedded broker and Postgres)."""
    return {n: i.pid for n, i in supervisor.all_info(s).items() if i.pid is not None}


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


def prepare(s: Settings, timeout_s: float = 120.0) -> None:
    """Start the supervisor with the embedded infrastructure, and create topics, tables and read
    models (idempotent)."""
    for d in (s.var_dir, s.run_dir, s.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    kafka.security.ensure_secrets(s)  # before the broker starts: it reads admin's password
    supervisor.ensure(s, programs(s))
    for name in ("kafka", "postgres"):
        if (name == "kafka" and s.kafka_embedded) or (name == "postgres" and s.pg_embedded):
            supervisor.start(s, name)
    deadline = time.monotonic() + timeout_s
    while not (kafka.port_open(s) and kafka.broker_ready(s) and pg.is_ready(s.dsn)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka or Postgres did not come up; see {s.log_dir}")
        time.sleep(0.3)
    kafka.ensure_topics(s)
    kafka.security.apply(s)  # the SCRAM users and ACLs, as admin
    keys.ensure_dev_key(s)  # the signing key of artifacts and events, unless one is configured
    container = bootstrap(s)
    _ = container.store  # creates the event-store tables
    anchors.ensure_anchor(s, container.store)  # history written before events were signed
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        migrate(conn, s.read_schema)
    container.close()


def start_service(s: Settings, name: str, timeout_s: float = 60.0) -> int:
    """Make sure a service runs (the supervisor restarts crashed ones by itself); returns its pid."""
    supervisor.start(s, name)
    deadline = time.monotonic() + timeout_s
    while (pid := service_pid(s, name)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start: {supervisor.info(s, name)}")
        time.sleep(0.1)
    return pid


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
    for name in enabled(s):
        supervisor.start(s, name)
    wait_healthy(s, list(enabled(s)), timeout_s)


def start_serving(s: Settings, timeout_s: float = 90.0) -> None:
    """Start serving's services on a running stack (whatever settings.serving_enabled says)."""
    for name in _serving_commands(s):
        supervisor.start(s, name)
    wait_healthy(s, list(_serving_commands(s)), timeout_s)


def kill_service(s: Settings, name: str) -> int | None:
    """SIGKILL a service's process group at once (crash tests); the supervisor brings it back.
    Returns the killed pid."""
    pid = service_pid(s, name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while not _gone(pid):
            time.sleep(0.01)
    return pid


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


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
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while not _gone(pid):
        time.sleep(0.05)


def down(s: Settings) -> None:
    supervisor.shutdown(s)
    _stop_leftovers(s)


def _stop_leftovers(s: Settings) -> None:
    """Processes of a stack started before supervision (recorded by pidfile), and the embedded
    broker or Postgres started by hand with kafka.sh / pg_ctl."""
    for path in s.run_dir.glob("*.pid") if s.run_dir.exists() else []:
        if path.name == "supervisord.pid":
            continue
        with contextlib.suppress(OSError, ValueError):
            _stop_pid(int(path.read_text().strip()))
        path.unlink(missing_ok=True)
    if s.pg_embedded:
        pg.stop(s)
    if s.kafka_embedded:
        kafka.broker(s, "stop")


def status(s: Settings) -> list[health.Component]:
    """Every component: the broker, Postgres, each service (its process, and its own pid answering
    on its port) and the work in flight (command lag, relay backlog, projector lag, stalls)."""
    from projections.apply import load_positions
    from projections.quarantine_queries import counts_by_reason

    sampled = health.sample(s, load_positions, counts_by_reason)
    by_name = {c.name: c for c in sampled}
    out = [by_name.pop("kafka"), by_name.pop("postgres")]
    for name in enabled(s):
        proc = by_name.pop(f"process:{name}", None)
        pid = service_pid(s, name)
        ok = _service_healthy(s, name)
        detail = f"pid {pid}" if pid else (proc.detail if proc else "not running")
        out.append(health.Component(name, "ok" if ok else "down", detail))
    out += [c for n, c in by_name.items() if not n.startswith("process:")]
    out += [c for n, c in by_name.items() if n.startswith("process:")]
    return out

"""`veritas up|status|down` as a user runs them: up twice is harmless, status shows everything
healthy, down leaves no process and no port of ours, and down with nothing running is harmless."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from config.settings import ROOT, Settings
from infra import supervisor

PORTS = {"kafka": 29192, "controller": 29193, "pg": 15449, "api": 18019, "metrics": 19191}
VAR = ROOT / "var" / "test-cli"
ENV = {
    **os.environ,
    "VERITAS_VAR_DIR": str(VAR),
    "VERITAS_KAFKA_PORT": str(PORTS["kafka"]),
    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{PORTS['kafka']}",
    "VERITAS_PG_PORT": str(PORTS["pg"]),
    "VERITAS_API_PORT": str(PORTS["api"]),
    "VERITAS_METRICS_PORT_BASE": str(PORTS["metrics"]),
    # The core stack's lifecycle, also when this test runs alone (before any test has set the
    # session's variables): serving (Ray) has its own tests.
    "VERITAS_SERVING_ENABLED": "false",
}


def veritas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veritas.cli", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _our_pids() -> set[int]:
    """The supervisor's pid and those of the programs it runs."""
    pids = {i.pid for i in supervisor.all_info(Settings(var_dir=VAR)).values() if i.pid}
    own = VAR / "run" / "supervisord.pid"
    if own.exists():
        pids.add(int(own.read_text().strip()))
    return pids


def _ours_running() -> list[str]:
    marker = str(VAR)
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if marker in cmd:
            out.append(f"{p.info['pid']}: {cmd[:120]}")
    return out


@pytest.mark.timeout(600)
def test_up_status_down_lifecycle() -> None:
    veritas("down")
    assert veritas("down").returncode == 0  # nothing running: harmless
    first = veritas("up")
    assert first.returncode == 0, first.stderr[-2000:]
    pids = _our_pids()
    # supervisord, and under it kafka, postgres, two command handlers, relay, projector,
    # the training orchestrator, the training steps worker, the drift monitor, the retraining
    # orchestrator and the api
    assert len(pids) == 12
    again = veritas("up")
    assert again.returncode == 0, again.stderr[-2000:]
    assert _our_pids() == pids  # up twice starts nothing new
    status = veritas("status")
    assert status.returncode == 0, status.stdout
    components = ("kafka", "postgres", "command-handler", "command-handler-1", "relay", "projector")
    for component in (*components, "api"):
        assert any(
            line.startswith(component) and "healthy" in line for line in status.stdout.splitlines()
        )
    down = veritas("down")
    assert down.returncode == 0, down.stderr[-2000:]
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert _ours_running() == []
    ports = [
        PORTS["kafka"],
        PORTS["controller"],
        PORTS["pg"],
        PORTS["api"],
        *(PORTS["metrics"] + i for i in range(5)),
    ]
    assert all(_free(p) for p in ports), [p for p in ports if not _free(p)]
    assert veritas("status").returncode == 1
    assert veritas("down").returncode == 0


def test_gitignore_keeps_jars_data_and_logs_out_of_git() -> None:
    for path in (
        "infra/kafka/.cache/lib/kafka_2.13-4.1.2.jar",
        "var/kafka/broker.pid",
        "var/log/api.log",
        "var/pg/data/PG_VERSION",
        ".venv/bin/python",
    ):
        r = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert r.returncode == 0, f"{path} is not ignored"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert not [t for t in tracked if t.endswith(".jar") or t.startswith(("var/", ".venv/"))]
    assert Path(ROOT, ".gitignore").exists()

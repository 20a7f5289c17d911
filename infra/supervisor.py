"""The local stack runs under supervisord: it restarts a crashed service with backoff, and `veritas
down` stops everything through it. This module writes its configuration and talks to it over its
XML-RPC interface on a unix socket under var/run."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from supervisor.xmlrpc import SupervisorTransport

from config.settings import ROOT, Settings

# supervisord's process states (supervisor.states.ProcessStates names).
ALIVE = frozenset({"STARTING", "RUNNING", "BACKOFF"})


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    priority: int  # lower starts first and stops last
    stopsignal: str = "TERM"
    stopwaitsecs: int = 20
    user: str | None = None
    startsecs: int = 2


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str
    pid: int | None
    description: str


def socket_path(s: Settings) -> Path:
    path = s.run_dir / "supervisor.sock"
    if len(str(path)) > 100:  # AF_UNIX paths are limited to ~108 bytes
        import hashlib

        digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        path = Path("/tmp") / f"veritas-{digest}.sock"
    return path


def config_text(s: Settings, programs: list[Program]) -> str:
    sock = socket_path(s)
    out = [
        "[unix_http_server]",
        f"file={sock}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={s.log_dir / 'supervisord.log'}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={s.run_dir / 'supervisord.pid'}",
        f"directory={ROOT}",
        f"childlogdir={s.log_dir}",
        "loglevel=info",
        # Whoever starts the stack keeps its environment: the services read their Settings from it.
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{sock}",
    ]
    for p in programs:
        out += [
            "",
            f"[program:{p.name}]",
            f"command={' '.join(shlex.quote(c) for c in p.command)}",
            f"directory={ROOT}",
            f"priority={p.priority}",
            "autostart=false",
            # A crashed service comes back at once; one that dies while starting is retried after
            # 1, 2, 3... seconds (supervisord's backoff), many times before it is given up (FATAL).
            "autorestart=true",
            f"startsecs={p.startsecs}",
            "startretries=60",
            f"stopsignal={p.stopsignal}",
            f"stopwaitsecs={p.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={s.log_dir / (p.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
            *([f"user={p.user}"] if p.user else []),
        ]
    return "\n".join(out) + "\n"


def _proxy(s: Settings) -> Any:
    transport = SupervisorTransport(None, None, f"unix://{socket_path(s)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def running(s: Settings) -> bool:
    try:
        return bool(_proxy(s).supervisor.getState()["statename"] == "RUNNING")
    except (OSError, xmlrpc.client.Error):
        return False


def ensure(s: Settings, programs: list[Program], timeout_s: float = 30.0) -> None:
    """Start supervisord with this configuration, or make a running one take it (new programs are
    added, changed ones restarted by `update`; unchanged ones keep running)."""
    conf = s.run_dir / "supervisord.conf"
    text = config_text(s, programs)
    changed = not conf.exists() or conf.read_text() != text
    if changed:
        conf.write_text(text)
    if running(s):
        if changed:
            _proxy(s).supervisor.reloadConfig()
            _ctl(s, "update")
        return
    subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], check=True, cwd=ROOT
    )
    deadline = time.monotonic() + timeout_s
    while not running(s):
        if time.monotonic() > deadline:
            raise RuntimeError(f"supervisord did not start; see {s.log_dir / 'supervisord.log'}")
        time.sleep(0.1)


def _ctl(s: Settings, *args: str) -> None:
    conf = str(s.run_dir / "supervisord.conf")
    command = [sys.executable, "-m", "supervisor.supervisorctl", "-c", conf, *args]
    subprocess.run(command, check=False, capture_output=True, cwd=ROOT)


def start(s: Settings, name: str) -> None:
    """Start a program unless it is alive (restarting on its own counts as alive)."""
    if info(s, name).state in ALIVE:
        return
    try:
        _proxy(s).supervisor.startProcess(name, False)
    except xmlrpc.client.Fault as exc:
        if "ALREADY_STARTED" not in exc.faultString:
            raise


def stop(s: Settings, name: str) -> None:
    try:
        _proxy(s).supervisor.stopProcess(name, True)
    except xmlrpc.client.Fault as exc:
        if "NOT_RUNNING" not in exc.faultString and "BAD_NAME" not in exc.faultString:
            raise


def info(s: Settings, name: str) -> ProcessInfo:
    try:
        raw = cast(dict[str, Any], _proxy(s).supervisor.getProcessInfo(name))
    except (OSError, xmlrpc.client.Error):
        return ProcessInfo(name, "UNKNOWN", None, "supervisord is not running")
    return _info(raw)


def _info(raw: dict[str, Any]) -> ProcessInfo:
    pid = int(raw["pid"]) or None
    return ProcessInfo(str(raw["name"]), str(raw["statename"]), pid, str(raw["description"]))


def all_info(s: Settings) -> dict[str, ProcessInfo]:
    try:
        rows = cast(list[dict[str, Any]], _proxy(s).supervisor.getAllProcessInfo())
    except (OSError, xmlrpc.client.Error):
        return {}
    return {str(r["name"]): _info(r) for r in rows}


def shutdown(s: Settings, timeout_s: float = 120.0) -> None:
    """Stop every program (supervisord stops the highest priority number first) and supervisord."""
    if not running(s):
        return
    proxy = _proxy(s)
    pid = int(proxy.supervisor.getPID())
    proxy.supervisor.shutdown()
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"

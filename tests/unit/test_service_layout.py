"""The local stack's process layout: command-handler instances, their names and metrics ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from config.services import handler_name, metrics_port
from config.settings import Settings
from veritas import services


def test_each_handler_instance_is_a_named_service_with_its_own_port() -> None:
    s = Settings(command_handlers=3, metrics_port_base=9100)
    names = list(services._commands(s))
    handlers = ["command-handler", "command-handler-1", "command-handler-2"]
    workers = [
        "relay",
        "projector",
        "training-orchestrator",
        "training-steps",
        "drift-monitor",
        "retraining-orchestrator",
    ]
    assert names == [*handlers, *workers, "api"]
    assert [services._commands(s)[h][-1] for h in handlers] == ["0", "1", "2"]
    ports = [metrics_port(s, n) for n in [*handlers, "relay", "projector", "training-steps"]]
    assert sorted(ports) == list(range(9100, 9106))  # distinct, next to each other
    assert handler_name(0) == "command-handler" and handler_name(4) == "command-handler-4"


def test_one_handler_is_a_valid_layout() -> None:
    s = Settings(command_handlers=1)
    assert [n for n in services._commands(s) if n.startswith("command-handler")] == [
        "command-handler"
    ]


def _serve(port: int, body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_metrics_port_answered_by_another_process_is_not_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = Settings(var_dir=tmp_path, metrics_port_base=port)
    s.run_dir.mkdir(parents=True)
    # A stand-in for the process the supervisor reports as the command handler.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setattr(services, "service_pid", lambda _s, _n: proc.pid)
        for pid, healthy in ((proc.pid + 1, False), (proc.pid, True)):
            line = f'veritas_worker_info{{name="command-handler",pid="{pid}"}} 1.0\n'
            server = _serve(port, line.encode())
            try:
                assert services._service_healthy(s, "command-handler") is healthy
            finally:
                server.shutdown()
                server.server_close()
    finally:
        proc.kill()
        proc.wait()

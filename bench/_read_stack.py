"""A private local stack for the read-side benchmark (bench/read_side.py).

Same approach as bench/_stack.py (variables put into os.environ before any Settings is built, so
the worker processes that `services.up` starts inherit them), but with its own data dir and ports,
so it can run while the write-path/memory benchmarks use var/bench and 39092/35433/38000/39101:

    var/bench-read, Kafka 49092 (controller 49093), Postgres 45433, API 48000, metrics 49101-49103.

The API's rate limit is lifted (see READ_BENCH_ENV), so the load generator gets no 429s.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from veritas.settings import Settings  # noqa: E402

READ_BENCH_ENV = {
    "VERITAS_VAR_DIR": str(ROOT / "var" / "bench-read"),
    "VERITAS_KAFKA_PORT": "49092",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:49092",
    "VERITAS_PG_PORT": "45433",
    "VERITAS_API_PORT": "48000",
    "VERITAS_METRICS_PORT_BASE": "49101",
    # The API's per-client rate limit (300/s by default) would turn a one-client load test into a
    # test of the limiter: lifted here, the limiter's middleware still runs on every request.
    "VERITAS_API_RATE_LIMIT": "1000000/second",
}


def read_bench_settings() -> Settings:
    os.environ.update(READ_BENCH_ENV)
    return Settings()


def _raise_on_sigterm(*_: object) -> None:
    raise SystemExit(143)  # so the `finally` below stops the stack


@contextmanager
def read_stack() -> Iterator[Settings]:
    """down (leftovers) -> wipe var/bench-read -> up -> yield -> down, even on error or Ctrl-C."""
    from veritas import services

    s = read_bench_settings()
    assert s.var_dir == ROOT / "var" / "bench-read", s.var_dir
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        services.down(s)
        shutil.rmtree(s.var_dir, ignore_errors=True)
        t0 = time.monotonic()
        services.up(s)
        print(f"[read] stack up in {time.monotonic() - t0:.1f}s under {s.var_dir}", flush=True)
        yield s
    finally:
        try:
            services.down(s)
        finally:
            signal.signal(signal.SIGTERM, previous)
        print("[read] stack down", flush=True)

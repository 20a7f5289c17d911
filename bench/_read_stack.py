"""A private local stack for the read-side benchmark (bench/read_side.py).

Same approach as bench/_stack.py (variables put into os.environ before any Settings is built, so
the worker processes that `services.up` starts inherit them), but with its own data dir and ports,
so it can run while the write-path/memory benchmarks use var/bench and 39092/35433/38000/39101:

    var/bench-read, Kafka 49092 (controller 49093), Postgres 45433, API 48000, metrics 49101-49103.

The API's rate limit is lifted (see READ_BENCH_ENV), so the load generator gets no 429s.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from _stack import ROOT, bench_settings, bench_stack

from config.settings import Settings

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
    return bench_settings(READ_BENCH_ENV)


def read_stack() -> AbstractContextManager[Settings]:
    return bench_stack(READ_BENCH_ENV, "read")

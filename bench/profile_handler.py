"""Where does the command handler's time go? Runs commands.service.process_batch in-process on the
real PostgresEventStore (embedded Postgres of the bench stack; no Kafka, no other workers):
1. commands/s of process_batch as it is;
2. process_batch under cProfile (top functions by cumulative time).
(Its earlier what-ifs, a JWT cache, one SELECT per batch and flat-array inserts, are in the core.)

Usage: python bench/profile_handler.py [--n 2000] [--batch 500] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import bench_settings, write_result
from _write_measures import envelope

from commands.service import Incoming, process_batch
from infra.auth import issue_token
from infra.postgres import server as pg
from veritas import services
from veritas.bootstrap import bootstrap


def batches(n: int, size: int, auth: str) -> list[list[Incoming]]:
    prefix = f"pf{uuid.uuid4().hex[:8]}-"
    items = [Incoming(envelope(f"{prefix}c{i}", f"{prefix}{i}"), auth) for i in range(n)]
    return [items[i : i + size] for i in range(0, n, size)]


def run_batches(container: Any, work: list[list[Incoming]]) -> float:
    """Seconds to run every batch through process_batch; every command must be accepted."""
    t0 = time.perf_counter()
    for b in work:
        out = process_batch(
            b, store=container.store, settings=container.settings, clock=container.clock
        )
        assert all(getattr(o, "status", None) == "accepted" for o in out), out[:3]
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args(argv)
    s = bench_settings()
    services.down(s)
    shutil.rmtree(s.var_dir, ignore_errors=True)
    s.var_dir.mkdir(parents=True)
    pg.start(s)
    try:
        container = bootstrap(s)
        auth = f"Bearer {issue_token(s, 'bench', ['data_scientist'])}"
        # 1. as it is
        rate = a.n / run_batches(container, batches(a.n, a.batch, auth))
        print(
            f"\n## process_batch: {a.n} RegisterModel in batches of {a.batch}: {rate:.0f} commands/s\n"
        )
        # 2. cProfile of the same
        prof = cProfile.Profile()
        work = batches(a.n, a.batch, auth)
        prof.enable()
        elapsed = run_batches(container, work)
        prof.disable()
        print(f"process_batch under cProfile: {a.n / elapsed:.0f} commands/s (profiler included)\n")
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(a.top)
        text = buf.getvalue()
        print(text)
        write_result(
            "profile_handler",
            {"n": a.n, "batch": a.batch, "commands_per_s": rate, "cprofile_top": text},
        )
        container.close()
    finally:
        pg.stop(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where does the command handler's time go? Runs commands.service.process_batch in-process on the
real PostgresEventStore (embedded Postgres of the bench stack; no Kafka, no other workers), first
as phases timed separately, then under cProfile.

Usage: python bench/profile_handler.py [--n 2000] [--batch 500] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import bench_settings, write_result  # noqa: E402
from write_path import envelope  # noqa: E402

from commands.decoding import Ready, decode  # noqa: E402
from commands.service import Incoming, _apply, process_batch  # noqa: E402
from veritas import pg, services  # noqa: E402
from veritas.auth import issue_token  # noqa: E402
from veritas.bootstrap import bootstrap  # noqa: E402
from veritas.uow import UnitOfWork  # noqa: E402


def batches(n: int, size: int, auth: str) -> list[list[Incoming]]:
    prefix = f"pf{uuid.uuid4().hex[:8]}-"
    items = [Incoming(envelope(f"{prefix}c{i}", f"{prefix}{i}"), auth) for i in range(n)]
    return [items[i : i + size] for i in range(0, n, size)]


def phases(container: Any, batch: list[Incoming]) -> dict[str, float]:
    """The steps of process_batch, timed one by one (same calls, same order)."""
    s, store, clock = container.settings, container.store, container.clock
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    decoded = [decode(s, i.value, i.authorization) for i in batch]
    t["decode (json+jwt+pydantic)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    known = store.find_results([d.envelope.command_id for d in decoded if isinstance(d, Ready)])
    t["find_results (1 query)"] = time.perf_counter() - t0
    assert not known
    uow = UnitOfWork(store)
    load_s = 0.0
    orig_load = store.load

    def timed_load(aid: Any) -> Any:
        nonlocal load_s
        t1 = time.perf_counter()
        try:
            return orig_load(aid)
        finally:
            load_s += time.perf_counter() - t1

    store.load = timed_load  # type: ignore[method-assign]
    events, results = [], []
    t0 = time.perf_counter()
    try:
        for d in decoded:
            r, new = _apply(uow, d, clock)  # type: ignore[arg-type]
            events.extend(new)
            results.append(r)
    finally:
        del store.load
    total_apply = time.perf_counter() - t0
    t["store.load (1 SELECT per new aggregate)"] = load_s
    t["handler+aggregate+seal (CPU)"] = total_apply - load_s
    t0 = time.perf_counter()
    store.commit(events, results)
    t["commit (lock, insert events, insert results, COMMIT)"] = time.perf_counter() - t0
    return t


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
        # 1. phases
        totals: dict[str, float] = {}
        for b in batches(a.n, a.batch, auth):
            for k, v in phases(container, b).items():
                totals[k] = totals.get(k, 0.0) + v
        whole = sum(totals.values())
        print(f"\n## process_batch phases: {a.n} RegisterModel in batches of {a.batch}\n")
        print("| phase | total s | us/command | share |\n|---|---|---|---|")
        for k, v in totals.items():
            print(f"| {k} | {v:.3f} | {v / a.n * 1e6:.0f} | {v / whole:.0%} |")
        print(f"| **all** | {whole:.3f} | {whole / a.n * 1e6:.0f} | {a.n / whole:.0f} commands/s |")
        # 2. cProfile of the real process_batch
        prof = cProfile.Profile()
        work = batches(a.n, a.batch, auth)
        t0 = time.perf_counter()
        prof.enable()
        for b in work:
            out = process_batch(b, store=container.store, settings=s, clock=container.clock)
            assert all(getattr(o, "status", None) == "accepted" for o in out), out[:3]
        prof.disable()
        elapsed = time.perf_counter() - t0
        print(f"\nprocess_batch under cProfile: {a.n / elapsed:.0f} commands/s (profiler overhead included)\n")
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(a.top)
        text = buf.getvalue()
        print(text)
        write_result("profile_handler", {"n": a.n, "batch": a.batch, "phases_s": totals,
                                         "commands_per_s_phases": a.n / whole, "cprofile_top": text})
        _ = json  # (results are JSON)
        container.close()
    finally:
        pg.stop(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

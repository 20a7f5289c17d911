"""Where does the command handler's time go? Runs commands.service.process_batch in-process on the
real PostgresEventStore (embedded Postgres of the bench stack; no Kafka, no other workers):
1. the phases of process_batch timed separately;
2. process_batch under cProfile;
3. what-if: process_batch with two candidate fixes patched in at run time (nothing in the core is
   changed): a cache of verified JWTs (same token on many commands), and loading every aggregate
   a batch touches with one SELECT ... WHERE originator_id = ANY(...) instead of one per aggregate.

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

from _stack import bench_settings, write_result
from write_path import envelope

from commands.decoding import Ready, decode
from commands.service import Incoming, _apply, process_batch
from veritas import pg, services
from veritas.auth import issue_token
from veritas.bootstrap import bootstrap
from veritas.uow import UnitOfWork


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


def what_if(
    container: Any,
    n: int,
    size: int,
    auth: str,
    *,
    jwt_cache: bool,
    prefetch: bool,
    flat_commit: bool = False,
) -> float:
    """process_batch commands/s with the candidate fixes patched in for the duration of the call."""
    import commands.decoding as decoding
    from domain.registry import model_id
    from events.envelope import EventEnvelope
    from veritas.eventstore import EVENTS_TABLE

    s, store = container.settings, container.store
    real_auth, real_load = decoding.authenticate, store.load
    cache: dict[str, tuple[Any, float]] = {}

    def cached_auth(settings: Any, authorization: str | None) -> Any:
        hit = cache.get(authorization or "")
        if hit is not None and hit[1] > time.time():
            return hit[0]
        principal = real_auth(settings, authorization)
        cache[authorization or ""] = (
            principal,
            time.time() + 60,
        )  # a real fix would use the token's exp
        return principal

    prefetched: dict[Any, list[Any]] = {}

    def load(aggregate_id: Any) -> Any:
        got = prefetched.pop(aggregate_id, None)
        return got if got is not None else real_load(aggregate_id)

    def prefetch_batch(items: list[Incoming]) -> None:
        ids = [model_id(json.loads(i.value)["payload"]["name"]) for i in items if i.value]
        found: dict[Any, list[Any]] = {i: [] for i in ids}
        with store.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT originator_id, state FROM {store.datastore.schema}.{EVENTS_TABLE} "
                "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version",
                (ids,),
            )
            for row in curs.fetchall():
                found[row["originator_id"]].append(EventEnvelope.from_bytes(bytes(row["state"])))
        prefetched.clear()
        prefetched.update(found)

    def commit(events: Any, results: Any) -> None:
        """Same rows, same lock, same transaction, but flat arrays + unnest instead of an array of
        the eventsourcing composite type, and results as one statement."""
        from psycopg.types.json import Jsonb

        from events.catalog import EVENT_TOPICS
        from veritas.eventstore import RESULTS_TABLE

        sch = store.datastore.schema
        with store.datastore.transaction(commit=True) as curs:
            curs.execute(f"LOCK TABLE {sch}.{EVENTS_TABLE} IN EXCLUSIVE MODE")
            if events:
                curs.execute(
                    f"INSERT INTO {sch}.{EVENTS_TABLE} "
                    "(originator_id, originator_version, topic, state) "
                    "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])",
                    (
                        [e.aggregate_id for _, e in events],
                        [e.version for _, e in events],
                        [EVENT_TOPICS[c] for c, _ in events],
                        [e.to_bytes() for _, e in events],
                    ),
                )
            if results:
                curs.execute(
                    f"INSERT INTO {sch}.{RESULTS_TABLE} (command_id, result) "
                    "SELECT * FROM unnest(%s::text[], %s::jsonb[])",
                    (
                        [r.command_id for r in results],
                        [Jsonb(r.model_dump(mode="json")) for r in results],
                    ),
                )

    real_commit = store.commit
    if flat_commit:
        store.commit = commit
    if jwt_cache:
        decoding.authenticate = cached_auth
    if prefetch:
        store.load = load
    try:
        work = batches(n, size, auth)
        t0 = time.perf_counter()
        for b in work:
            if prefetch:
                prefetch_batch(b)
            out = process_batch(b, store=store, settings=s, clock=container.clock)
            assert all(getattr(o, "status", None) == "accepted" for o in out), out[:3]
        return n / (time.perf_counter() - t0)
    finally:
        decoding.authenticate = real_auth
        if prefetch:
            del store.load
        if flat_commit:
            del store.commit
        _ = real_commit


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
        print(
            f"\nprocess_batch under cProfile: {a.n / elapsed:.0f} commands/s "
            "(profiler overhead included)\n"
        )
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(a.top)
        text = buf.getvalue()
        print(text)
        # 3. what-if
        whatif = {}
        for label, jwt_cache, prefetch in (
            ("as is", False, False),
            ("+ JWT cache", True, False),
            ("+ one SELECT per batch", False, True),
            ("+ both", True, True),
            ("+ both + flat-array commit", True, True),
        ):
            whatif[label] = what_if(
                container,
                a.n,
                a.batch,
                auth,
                jwt_cache=jwt_cache,
                prefetch=prefetch,
                flat_commit=label.endswith("commit"),
            )
        print(
            "\n## what-if: process_batch commands/s with candidate fixes (in-process, no Kafka)\n"
        )
        print("| variant | commands/s | us/command | vs as is |\n|---|---|---|---|")
        for label, rate in whatif.items():
            print(f"| {label} | {rate:.0f} | {1e6 / rate:.0f} | {rate / whatif['as is']:.2f}x |")
        write_result(
            "profile_handler",
            {
                "n": a.n,
                "batch": a.batch,
                "phases_s": totals,
                "commands_per_s_phases": a.n / whole,
                "cprofile_top": text,
                "what_if_commands_per_s": whatif,
            },
        )
        container.close()
    finally:
        pg.stop(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

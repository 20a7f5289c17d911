"""Where does the read side spend its time? (a diagnostic, not part of bench/read_side.py)

Starts the private read-bench stack (bench/_read_stack.py), loads a history, then runs the
sections named in --sections (default: all of them):

replay   `projections.replay.replay(verify=True)` with timers around its steps (Kafka consume,
         apply per topic, each projection handler, positions, chain verification, digest); then
         "what-ifs" (--what-ifs), each a full replay with a candidate fix patched in at run time in
         this process (no core file changes):
         - index: an extra read-model migration `CREATE INDEX ON rm_models (aggregate_id)` (the
           UpdateModelMetadata projection updates `WHERE aggregate_id = %s`, a sequential scan);
         - pipeline: each batch in psycopg pipeline mode, a `RETURNING 1` + fetchone() on the
           audit-log insert (if the core still has one) dropped (an upper bound: it assumes no
           duplicate event on the topics, true for a rebuild of the relay's transactional output);
         - pipeline+index;
         and a cProfile of one more replay (top functions by own time).
copy     a bulk rebuild what-if: the same records parsed with the same pydantic models, written
         with COPY, rm_models folded in memory (compared with the live read model).
api      a second API process (same code and database) with probe routes, stock and with only the
         authentication middleware: req/s and API CPU per request from /health to /models/{name};
         and a cProfile of the httpx load generator.
latency  command -> read model at --rate/s with the stock workers; if the core has no
         workers.base.consume_batch yet, again with the projector (then also the command handler)
         replaced by the same code whose consume(n, t) returns as soon as one record is there.
         The replacements run as separate processes and are stopped by their pid.

Usage: python bench/diagnose_read.py [--n 5000] [--updates 500] [--sections replay,copy,api]
Writes bench/results/diagnose_read.json.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _read_stack import read_stack
from _stack import wait_quiet, write_result
from read_side import (
    command_to_read_model,
    git_state,
    load_history,
    raw_consume,
    raw_kafka_latency,
)

import projections.apply as apply_mod
import projections.replay as replay_mod
import projections.schema as schema_mod
import workers.base as workers_base
from veritas import services
from veritas.auth import issue_token
from veritas.bootstrap import bootstrap
from veritas.settings import ROOT, Settings


class _Done(Exception):
    pass


WALL: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            WALL[name] += time.perf_counter() - t
            CALLS[name] += 1

    return wrapper


@contextlib.contextmanager
def patched(obj: Any, attr: str, value: Any) -> Iterator[None]:
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


def run_replay(s: Settings) -> dict[str, Any]:
    c = bootstrap(s)
    try:
        rep = replay_mod.replay(c, verify=True)
    finally:
        c.close()
    assert rep.switched and rep.digests_match and rep.chain_break is None, rep
    return {
        "records": rep.records,
        "seconds": rep.seconds,
        "records_per_s": rep.records / rep.seconds,
    }


# ------------------------------------------------------------------------------ replay what-ifs


INDEX_MIGRATION = "CREATE INDEX IF NOT EXISTS rm_models_aggregate_id ON rm_models (aggregate_id);"


class _NoReturningCursor:
    """Wraps a cursor: drops a trailing ' RETURNING 1' and answers fetchone() with (1,) without a
    round trip, so that nothing forces a pipeline sync per record."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, query: Any, params: Any = None, **kw: Any) -> Any:
        if isinstance(query, str) and query.endswith(" RETURNING 1"):
            query = query[: -len(" RETURNING 1")]
        return self._cur.execute(query, params, **kw)

    def fetchone(self) -> tuple[int]:
        return (1,)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


@contextlib.contextmanager
def what_if(kind: str) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if "index" in kind:
            stack.enter_context(
                patched(schema_mod, "MIGRATIONS", [*schema_mod.MIGRATIONS, INDEX_MIGRATION])
            )
        if "pipeline" in kind:
            real_event = apply_mod._event

            def event_no_returning(cur: Any, *a: Any, **kw: Any) -> Any:
                return real_event(_NoReturningCursor(cur), *a, **kw)

            stack.enter_context(patched(apply_mod, "_event", event_no_returning))
            if hasattr(replay_mod, "apply_batch"):  # the core applies a batch at a time
                real_batch = replay_mod.apply_batch

                def batch_pipelined(conn: Any, *a: Any, **kw: Any) -> Any:
                    with conn.pipeline():
                        return real_batch(conn, *a, **kw)

                stack.enter_context(patched(replay_mod, "apply_batch", batch_pipelined))
            else:
                raise RuntimeError("pipeline what-if: projections.replay has no apply_batch")
        yield


def maybe_patch(stack: contextlib.ExitStack, obj: Any, attr: str, name: str) -> None:
    """Wrap obj.attr with a timer if it exists (the core moves; a missing one is skipped)."""
    if hasattr(obj, attr):
        stack.enter_context(patched(obj, attr, timed(name, getattr(obj, attr))))


def timed_replay(s: Settings) -> dict[str, Any]:
    """One replay with timers around its steps (module globals are looked up at call time)."""
    WALL.clear()
    CALLS.clear()
    real_consumer = replay_mod.Consumer

    class TimedConsumer(real_consumer):  # type: ignore[misc, valid-type]
        def consume(self, *a: Any, **kw: Any) -> Any:
            return timed("kafka consume()", super().consume)(*a, **kw)

    real_apply = apply_mod.apply_record

    def apply_by_topic(conn: Any, msg: Any, *a: Any, **kw: Any) -> Any:
        return timed(f"apply_record: {msg.topic()}", real_apply)(conn, msg, *a, **kw)

    handlers = {k: timed(f"  projection {k}", v) for k, v in apply_mod.PROJECTIONS.items()}
    with contextlib.ExitStack() as st:
        st.enter_context(patched(replay_mod, "Consumer", TimedConsumer))
        st.enter_context(patched(apply_mod, "apply_record", apply_by_topic))
        st.enter_context(patched(apply_mod, "PROJECTIONS", handlers))
        st.enter_context(
            patched(
                apply_mod.EventEnvelope,
                "from_bytes",
                classmethod(
                    lambda cls, raw: timed("  EventEnvelope.from_bytes", cls.model_validate_json)(
                        raw
                    )
                ),
            )
        )
        maybe_patch(st, apply_mod, "save_positions", "save_positions")
        maybe_patch(st, replay_mod, "verify_chains", "verify_chains")
        maybe_patch(st, replay_mod, "digest", "digest (x2)")
        maybe_patch(st, replay_mod, "migrate", "migrate")
        maybe_patch(st, replay_mod, "end_offsets", "end_offsets")
        r = run_replay(s)
    r["steps_wall_s"] = {k: round(v, 3) for k, v in WALL.items()}
    r["steps_calls"] = dict(CALLS)
    r["steps_us_per_record"] = {k: round(v / r["records"] * 1e6, 1) for k, v in WALL.items()}
    return r


def profiled_replay(s: Settings, top: int = 25) -> dict[str, Any]:
    prof = cProfile.Profile()
    prof.enable()
    r = run_replay(s)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    r["profile_top_tottime"] = buf.getvalue()
    return r


# ------------------------------------------------------------------------- bulk (COPY) what-if


def read_all_records(s: Settings) -> list[tuple[str, int, int, bytes, int | None]]:
    """Every record of the replay's topics, read_committed: (topic, partition, offset, value,
    store_seq header)."""
    c = replay_mod._consumer(bootstrap(s))
    try:
        ends = replay_mod.end_offsets(c)
        todo = {k: v for k, v in ends.items() if v > 0}
        from confluent_kafka import TopicPartition

        c.assign([TopicPartition(t, p, 0) for (t, p) in todo])
        out: list[tuple[str, int, int, bytes, int | None]] = []
        while todo:
            for m in c.consume(10000, 0.05):
                if m.error() or m.value() is None:
                    continue
                seq = apply_mod.store_seq(apply_mod.headers(m))
                out.append((m.topic(), m.partition(), m.offset(), m.value(), seq))
            for tp in c.position([TopicPartition(t, p) for (t, p) in todo]):
                if tp.offset >= todo[(tp.topic, tp.partition)]:
                    del todo[(tp.topic, tp.partition)]
        return out
    finally:
        c.close()


def copy_rebuild(s: Settings) -> dict[str, Any]:
    """What a bulk rebuild could do: the same records parsed with the same pydantic models,
    rm_audit_log and rm_command_status written with COPY, rm_models folded in memory (register,
    then metadata updates) and written with COPY; into a scratch schema. No chain verification
    and no digest (those are timed separately in the replay)."""
    import json as _json

    import psycopg

    from commands.results import CommandResult
    from events.envelope import EventEnvelope

    t_read = time.monotonic()
    recs = read_all_records(s)
    read_s = time.monotonic() - t_read
    schema = "bench_copy_rebuild"
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        schema_mod.migrate(conn, schema)
        t0 = time.monotonic()
        models: dict[str, dict[str, Any]] = {}
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(f"SET LOCAL search_path TO {schema}")
            with cur.copy(
                "COPY rm_audit_log (aggregate_id, version, aggregate_type, event_id, type, actor,"
                " occurred_at, correlation_id, causation_id, envelope, topic, kafka_partition,"
                " kafka_offset, store_seq) FROM STDIN"
            ) as cp:
                for topic, part, off, value, seq in recs:
                    if topic == apply_mod.RESULTS_TOPIC:
                        continue
                    env = EventEnvelope.from_bytes(value)
                    cp.write_row(
                        (
                            env.aggregate_id,
                            env.version,
                            env.aggregate_type,
                            env.event_id,
                            env.type,
                            env.actor,
                            env.occurred_at,
                            env.correlation_id,
                            env.causation_id,
                            value.decode(),
                            topic,
                            part,
                            off,
                            seq,
                        )
                    )
                    pl = env.payload
                    if env.type == "ModelRegistered":
                        models[str(env.aggregate_id)] = {
                            "name": pl["name"],
                            "aggregate_id": env.aggregate_id,
                            "description": pl["description"],
                            "intended_use": pl["intended_use"],
                            "limitations": pl["limitations"],
                            "owner": pl["owner"],
                            "tags": dict(pl["tags"]),
                            "created_at": env.occurred_at,
                            "updated_at": env.occurred_at,
                        }
                    elif env.type == "ModelMetadataUpdated":
                        row = models[str(env.aggregate_id)]
                        for k in ("description", "intended_use", "limitations"):
                            if pl.get(k) is not None:
                                row[k] = pl[k]
                        row["tags"].update(pl.get("tags") or {})
                        row["updated_at"] = env.occurred_at
            with cur.copy(
                "COPY rm_command_status (command_id, status, reason_code, sub_code, message,"
                " events) FROM STDIN"
            ) as cp:
                for topic, _, _, value, _ in recs:
                    if topic != apply_mod.RESULTS_TOPIC:
                        continue
                    r = CommandResult.model_validate_json(value)
                    cp.write_row(
                        (
                            r.command_id,
                            r.status,
                            r.reason_code,
                            r.sub_code,
                            r.message,
                            _json.dumps([e.model_dump(mode="json") for e in r.events]),
                        )
                    )
            with cur.copy(
                "COPY rm_models (name, aggregate_id, description, intended_use, limitations,"
                " owner, tags, created_at, updated_at) FROM STDIN"
            ) as cp:
                for row in models.values():
                    cp.write_row(
                        (
                            row["name"],
                            row["aggregate_id"],
                            row["description"],
                            row["intended_use"],
                            row["limitations"],
                            row["owner"],
                            _json.dumps(row["tags"]),
                            row["created_at"],
                            row["updated_at"],
                        )
                    )
        write_s = time.monotonic() - t0
        # the same rows as the live read model? (rm_models compared without volatile columns)
        same = conn.execute(
            f"SELECT (SELECT count(*) FROM {schema}.rm_models m JOIN {s.read_schema}.rm_models l"
            "  USING (name) WHERE m.tags = l.tags AND m.description = l.description"
            "  AND m.updated_at = l.updated_at),"
            f" (SELECT count(*) FROM {s.read_schema}.rm_models)"
        ).fetchone()
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    n = len(recs)
    return {
        "records": n,
        "read_s": read_s,
        "parse_and_copy_s": write_s,
        "records_per_s_parse_and_copy": n / write_s,
        "records_per_s_incl_read": n / (read_s + write_s),
        "rm_models_rows_equal_to_live": same[0] if same else None,
        "rm_models_rows_live": same[1] if same else None,
    }


# ----------------------------------------------------------------------------- API breakdown

VARIANT_API = """
import sys
import uvicorn
from api.app import Db, create_app, reader
from projections import queries

app = create_app()
if sys.argv[2] == "auth_middleware_only":
    # keep the one BaseHTTPMiddleware the routes need (authentication); drop the others
    # (request counter, correlation id, slowapi's rate limiter)
    def _keep(m):
        dispatch = getattr(m, "kwargs", {}).get("dispatch")
        return dispatch is not None and "auth" in dispatch.__name__

    app.user_middleware = [m for m in app.user_middleware if _keep(m)]
print(
    "middleware:",
    [(m.cls.__name__, getattr(m.kwargs.get("dispatch"), "__name__", "")) for m in app.user_middleware],
    flush=True,
)
read = reader("read:registry")


@app.get("/probe/auth")  # /models/{name}'s dependencies (JWT + RBAC), no database
def probe_auth(_=read):
    return {"ok": True}


@app.get("/probe/db/{name}")  # + a pooled connection and get_model's query, no response model
def probe_db(name: str, conn: Db, _=read):
    row = queries.get_model(conn, name)
    return {"name": row["name"] if row else None}


from fastapi import HTTPException, Request
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from api import schemas
from veritas.auth import authorize
from veritas.bootstrap import read_model_kwargs

_apool = []
ONE_QUERY = (  # get_model's own SELECT (queries.MODEL_SELECT) plus the versions, in one query
    "SELECT q.*, coalesce((SELECT json_agg(v ORDER BY v.major, v.minor, v.patch)"
    " FROM rm_model_versions v WHERE v.model_name = q.name), '[]') AS versions"
    f" FROM ({queries.MODEL_SELECT} WHERE m.name = %s) q"
)


@app.get("/probe/async/{name}", response_model=schemas.ModelDetail)
async def probe_async(name: str, request: Request):
    # /models/{name} as an async route: no threadpool hop, an async pool, one query
    authorize(request.state.principal, "read:registry")
    if not _apool:
        s = app.state.container.settings
        pool = AsyncConnectionPool(
            s.dsn, min_size=1, max_size=8, open=False, kwargs=read_model_kwargs(s.read_schema)
        )
        await pool.open()
        _apool.append(pool)
    async with _apool[0].connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(ONE_QUERY, (name,))
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "not found")
    return row


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def api_breakdown(
    s: Settings, token: str, names: list[str], seconds: float, port: int = 48001
) -> dict[str, Any]:
    """A second API process (same code and database, plus two probe routes) per variant; each
    endpoint loaded with the raw client at concurrency 16: req/s and the API process's CPU
    ms per request. The steps from /health to /models/{name} show where a read's cost goes."""
    import asyncio
    import urllib.request

    import psutil
    from read_side import _raw_round

    auth = {"authorization": f"Bearer {token}"}
    endpoints = {
        "/health": (["/health"], {}),
        "/probe/auth (JWT + RBAC deps)": (["/probe/auth"], auth),
        "/probe/db/{name} (+ pool + 1 query)": ([f"/probe/db/{n}" for n in names], auth),
        "/models/{name} (+ 2nd query + response model)": ([f"/models/{n}" for n in names], auth),
        "/probe/async/{name} (async route, async pool, 1 query)": (
            [f"/probe/async/{n}" for n in names],
            auth,
        ),
    }
    out: dict[str, Any] = {}
    for variant in ("stock", "auth_middleware_only"):
        proc = subprocess.Popen(
            [sys.executable, "-c", VARIANT_API, str(port), variant],
            cwd=ROOT,
            stdout=(s.log_dir / f"api-{variant}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ.copy(),
        )
        url = f"http://127.0.0.1:{port}"
        res_v: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"{url}/health", timeout=1).close()
                    break
                time.sleep(0.2)
            ps = psutil.Process(proc.pid)
            for label, (paths, hdrs) in endpoints.items():
                asyncio.run(_raw_round(url, paths, hdrs, 16, 1.0))  # warm-up
                c0 = sum(ps.cpu_times()[:2])
                res = asyncio.run(_raw_round(url, paths, hdrs, 16, seconds))
                cpu = sum(ps.cpu_times()[:2]) - c0
                bad = sum(v for k, v in res["statuses"].items() if k != 200)
                lat = sorted(res["latencies"])
                res_v[label] = {
                    "req_per_s": res["requests"] / res["seconds"],
                    "api_cpu_ms_per_request": 1000 * cpu / max(1, res["requests"]),
                    "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                    "non_200": bad,
                }
                print(
                    f"[diag] API {variant:23s} {label:55s} {res_v[label]['req_per_s']:6.0f} req/s,"
                    f" API CPU {res_v[label]['api_cpu_ms_per_request']:.2f} ms/request"
                    + (f", {bad} non-200" if bad else ""),
                    flush=True,
                )
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)
        out[variant] = res_v
    return out


def profile_httpx_client(s: Settings, seconds: float) -> dict[str, Any]:
    """The httpx load generator itself, in this process: where does its CPU go?"""
    import asyncio

    from read_side import _httpx_round

    prof = cProfile.Profile()
    c0 = time.process_time()
    prof.enable()
    res = asyncio.run(_httpx_round(s.api_url, ["/health"], {}, 16, seconds))
    prof.disable()
    cpu = time.process_time() - c0
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    out = {
        "req_per_s_under_profiler": res["requests"] / res["seconds"],
        "client_cpu_ms_per_request": 1000 * cpu / max(1, res["requests"]),
        "top_tottime": buf.getvalue(),
    }
    print(
        f"[diag] httpx client: {out['req_per_s_under_profiler']:.0f} req/s under cProfile,"
        f" {out['client_cpu_ms_per_request']:.1f} ms client CPU/request"
    )
    print(buf.getvalue()[-4000:], flush=True)
    return out


# ---------------------------------------------------------------------------- latency what-ifs

FAST_CONSUME = """
import sys
from confluent_kafka import Consumer

class FastConsumer(Consumer):
    # consume(n, t) returns as soon as one record is there, with whatever else is already fetched
    def consume(self, num_messages=1, timeout=-1):
        first = self.poll(timeout)
        if first is None:
            return []
        return [first, *super().consume(num_messages - 1, 0)] if num_messages > 1 else [first]

import workers.{module} as w
w.Consumer = FastConsumer
from veritas.bootstrap import bootstrap
w.run(bootstrap())
"""


def replace_worker(s: Settings, name: str, module: str) -> subprocess.Popen[bytes]:
    """Stop the stock worker (by its recorded pid) and start the fast-consume variant."""
    pid = services.service_pid(s, name)
    if pid is not None:
        services._stop_pid(pid)
    (s.run_dir / f"{name}.pid").unlink(missing_ok=True)
    log = (s.log_dir / f"{name}-fast.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", FAST_CONSUME.replace("{module}", module)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=os.environ.copy(),
    )


def stop_proc(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        os.killpg(p.pid, 15)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait(5)


def latency_summary(lat: dict[str, Any]) -> dict[str, Any]:
    st = lat["stages"]
    return {
        "command_to_read_model": lat["command_to_read_model"],
        "command_to_result_on_kafka": st["command_to_result_on_kafka"],
        "command_to_event_on_kafka": st["command_to_event_on_kafka"],
        "event_on_kafka_to_read_model": st["event_on_kafka_to_read_model"],
        "complete": lat["complete"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--updates", type=int, default=500)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument(
        "--sections",
        default="replay,copy,api,latency",
        help="comma-separated: replay, copy, api, latency",
    )
    ap.add_argument(
        "--what-ifs", default="stock,index,pipeline,pipeline+index", help="replay what-ifs to run"
    )
    ap.add_argument("--api-seconds", type=float, default=6.0)
    a = ap.parse_args()
    out: dict[str, Any] = {"n": a.n, "updates": a.updates, "git": git_state()}
    procs: list[subprocess.Popen[bytes]] = []
    with read_stack() as s:
        try:
            token = issue_token(s, "bench", ["data_scientist"])
            load = load_history(s, token, a.n, a.updates, timeout_s=300)
            names = load.pop("names")
            sections = set(a.sections.split(","))
            out["load"] = load
            print(
                f"[diag] history: {load['results']} results, {load['audit_rows']} events",
                flush=True,
            )
            wait_quiet(s, max_s=30, threshold=0.15)
            out["raw_consume"] = raw_consume(s)
            print(
                f"[diag] raw consume {out['raw_consume']['records_per_s']:.0f} records/s",
                flush=True,
            )

            if "replay" in sections:
                out["replay_timed"] = r = timed_replay(s)
                print(
                    f"[diag] timed replay: {r['records_per_s']:.0f} records/s ({r['seconds']:.1f}s)"
                )
                for k, v in sorted(r["steps_wall_s"].items(), key=lambda kv: -kv[1]):
                    us = r["steps_us_per_record"][k]
                    print(f"[diag]   {k:40s} {v:7.2f}s  {us:8.0f} us/record")
                out["replay_what_if"] = {}
                for kind in a.what_ifs.split(","):
                    with what_if(kind):
                        res = run_replay(s)
                    out["replay_what_if"][kind] = res
                    print(
                        f"[diag] replay {kind:15s}: {res['records_per_s']:6.0f} records/s"
                        f" ({res['seconds']:.1f}s)",
                        flush=True,
                    )
                out["replay_profiled"] = profiled_replay(s)
                print(out["replay_profiled"]["profile_top_tottime"], flush=True)

            if "copy" in sections:
                out["copy_rebuild"] = cr = copy_rebuild(s)
                print(
                    f"[diag] COPY rebuild what-if: {cr['records']} records, read {cr['read_s']:.1f}s,"
                    f" parse+COPY {cr['parse_and_copy_s']:.1f}s"
                    f" ({cr['records_per_s_incl_read']:.0f} records/s incl. read);"
                    f" rm_models rows equal to live: {cr['rm_models_rows_equal_to_live']}"
                    f"/{cr['rm_models_rows_live']}",
                    flush=True,
                )

            if "api" in sections:
                wait_quiet(s, max_s=20, threshold=0.15)
                out["api_breakdown"] = api_breakdown(s, token, names, a.api_seconds)
                out["httpx_client_profile"] = profile_httpx_client(s, a.api_seconds / 2)

            if "latency" in sections:
                wait_quiet(s, max_s=20, threshold=0.15)
                runs: dict[str, Any] = {}
                out["latency"] = runs
                runs["raw_kafka"] = raw_kafka_latency(s, token, a.rate, a.seconds, 1.0)[
                    "produce_to_consume"
                ]
                print(f"[diag] raw kafka: {runs['raw_kafka']}", flush=True)
                runs["stock"] = latency_summary(
                    command_to_read_model(s, token, a.rate, a.seconds, 5.0, 1.0)
                )
                print(f"[diag] stock: {runs['stock']}", flush=True)
                if hasattr(workers_base, "consume_batch"):
                    print("[diag] the core already has workers.base.consume_batch: no what-if")
                    raise _Done
                procs.append(replace_worker(s, "projector", "projector"))
                time.sleep(8)  # group join (static membership: it takes the partitions back)
                runs["fast_projector"] = latency_summary(
                    command_to_read_model(s, token, a.rate, a.seconds, 5.0, 1.0)
                )
                print(f"[diag] fast projector: {runs['fast_projector']}", flush=True)
                procs.append(replace_worker(s, "command-handler", "command_handler"))
                time.sleep(8)
                runs["fast_projector_and_handler"] = latency_summary(
                    command_to_read_model(s, token, a.rate, a.seconds, 5.0, 1.0)
                )
                print(
                    f"[diag] fast projector+handler: {runs['fast_projector_and_handler']}",
                    flush=True,
                )
        except _Done:
            pass
        finally:
            for p in procs:
                stop_proc(p)
    write_result("diagnose_read", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

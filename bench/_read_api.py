"""Read-side measurement 2: GET /models/{name} against GET /health on the same API server."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _read_common import CpuMeter, stats_ms

from config.settings import Settings

# ------------------------------------------------------------------------------------------ 2. API


async def _drive(
    worker: Callable[[], Awaitable[None]],
    concurrency: int,
    latencies: list[float],
    statuses: dict[int, int],
) -> dict[str, Any]:
    """Run `concurrency` copies of `worker` to the end; what they recorded, with the wall time."""
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "latencies": latencies,
        "statuses": statuses,
    }


async def _httpx_round(
    base_url: str, paths: list[str], headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` coroutines sharing one httpx.AsyncClient, each sending GETs back to back."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        stop = loop.time() + seconds

        async def worker() -> None:
            rnd = random.Random()
            while loop.time() < stop:
                path = paths[rnd.randrange(len(paths))]
                t = time.perf_counter()
                r = await client.get(path, headers=headers)
                latencies.append(time.perf_counter() - t)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        return await _drive(worker, concurrency, latencies, statuses)


async def _raw_round(
    base_url: str, paths: list[str], headers: dict[str, str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """The same load from a minimal HTTP/1.1 keep-alive client on asyncio streams (one connection
    per coroutine, pre-encoded requests, Content-Length framing): a few times cheaper per request
    than httpx, so on a 2-core machine more of the CPU is left to the server being measured."""
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for path in paths
    ]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = loop.time() + seconds

    async def worker() -> None:
        rnd = random.Random()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while loop.time() < stop:
                req = requests[rnd.randrange(len(requests))]
                t = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                status = int(lines[0].split(b" ", 2)[1])
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in lines[1:]
                    if line[:15].lower() == b"content-length:"
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    return await _drive(worker, concurrency, latencies, statuses)


CLIENTS = {"httpx": _httpx_round, "raw": _raw_round}


def api_reads(
    s: Settings,
    token: str,
    names: list[str],
    concurrency: int,
    seconds: float,
    rounds: int,
    clients: list[str],
) -> dict[str, Any]:
    """For each client: `rounds` x (/health for `seconds`, then /models/{name} for `seconds`)."""
    targets = {
        "health": (["/health"], {}),
        "model": ([f"/models/{n}" for n in names], {"authorization": f"Bearer {token}"}),
    }
    # Sanity: one of each must answer 200.
    with httpx.Client(base_url=s.api_url, timeout=10) as cl:
        for key, (paths, hdrs) in targets.items():
            r = cl.get(paths[0], headers=hdrs)
            if r.status_code != 200:
                raise RuntimeError(f"{key}: GET {paths[0]} -> {r.status_code} {r.text[:200]}")
    meter = CpuMeter(s)
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "rounds": rounds,
    }
    for client in clients:
        load = CLIENTS[client]
        agg: dict[str, dict[str, Any]] = {
            k: {
                "requests": 0,
                "seconds": 0.0,
                "latencies": [],
                "statuses": {},
                "rounds": [],
                "cpu": [],
            }
            for k in targets
        }
        for paths, hdrs in targets.values():  # warm-up, not counted
            asyncio.run(load(s.api_url, paths, hdrs, concurrency, 1.0))
        for rnd in range(rounds):
            for key, (paths, hdrs) in targets.items():
                meter.start()
                res = asyncio.run(load(s.api_url, paths, hdrs, concurrency, seconds))
                cpu = meter.stop()
                a = agg[key]
                a["requests"] += res["requests"]
                a["seconds"] += res["seconds"]
                a["latencies"] += res["latencies"]
                for code, cnt in res["statuses"].items():
                    a["statuses"][code] = a["statuses"].get(code, 0) + cnt
                a["rounds"].append(res["requests"] / res["seconds"])
                a["cpu"].append(cpu)
                c = cpu["cpu_s"]
                print(
                    f"[read]   {client} round {rnd + 1} {key}: {res['requests'] / res['seconds']:.0f}"
                    f" req/s; cpu s: api {c['api']:.1f}, postgres {c['postgres']:.1f},"
                    f" client {c['bench client']:.1f} in {cpu['wall_s']:.0f}s",
                    flush=True,
                )
        out[client] = {}
        for key, a in agg.items():
            out[client][key] = {
                "requests": a["requests"],
                "req_per_s": a["requests"] / a["seconds"],
                "req_per_s_by_round": a["rounds"],
                "statuses": {str(k): v for k, v in a["statuses"].items()},
                "non_200": sum(v for k, v in a["statuses"].items() if k != 200),
                **stats_ms(a["latencies"]),
                "api_cpu_ms_per_request": 1000
                * sum(c["cpu_s"]["api"] for c in a["cpu"])
                / max(1, a["requests"]),
                "postgres_cpu_ms_per_request": 1000
                * sum(c["cpu_s"]["postgres"] for c in a["cpu"])
                / max(1, a["requests"]),
                "client_cpu_ms_per_request": 1000
                * sum(c["cpu_s"]["bench client"] for c in a["cpu"])
                / max(1, a["requests"]),
                "cpu_by_round": a["cpu"],
            }
        out[client]["ratio"] = (
            out[client]["model"]["req_per_s"] / out[client]["health"]["req_per_s"]
        )
    return out

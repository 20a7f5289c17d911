"""Where does the command handler spend its wall-clock time inside the running stack?

Starts the bench stack, stops its command-handler process (by its recorded pid) and runs the same
code, workers.command_handler.run, in this process instead, with timers wrapped around its
steps (consume wait, decode, store.load, handler CPU, commit, Kafka publish). Each step records
wall time and this thread's CPU time: wall much larger than CPU means waiting (for Postgres, Kafka
or a CPU that other processes hold).

Usage: python bench/diagnose_handler.py [--n 5000]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import bench_stack, cpu_seconds, stack_processes, wait_quiet, write_result
from _write_measures import command_latency, throughput

import commands.service as service
import workers.command_handler as ch
from config.services import handler_name
from infra import supervisor
from infra.auth import issue_token
from veritas.bootstrap import bootstrap

WALL: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
BATCHES: list[tuple[int, float]] = []  # (messages, seconds consume() took) per non-empty batch


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            WALL[name] += time.perf_counter() - w
            CPU[name] += time.thread_time() - c
            CALLS[name] += 1

    return wrapper


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="instead of a throughput run, send at this rate for --seconds and report latency",
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=1000, help="commands sent first and not measured")
    a = ap.parse_args(argv)
    with bench_stack() as s:
        # Every handler stops through the supervisor (a killed one would be restarted at once), so
        # the in-process handler below gets all the partitions.
        for i in range(s.command_handlers):
            supervisor.stop(s, handler_name(i))
        container = bootstrap(s)
        store = container.store
        # wrap the steps (module globals are looked up at call time)
        service.decode = timed("decode", service.decode)
        store.find_results = timed("store.find_results", store.find_results)  # type: ignore[method-assign]
        store.load = timed("store.load", store.load)  # type: ignore[method-assign]
        store.commit = timed("store.commit", store.commit)  # type: ignore[method-assign]
        ch.process_batch = timed("process_batch (all)", ch.process_batch)
        ch.publish = timed("publish (begin txn + produce)", ch.publish)
        stopper_box: list[Any] = []
        real_start = ch.start_worker

        def start_worker(c: Any, name: str) -> Any:
            st = real_start(c, name)
            stopper_box.append(st)
            return st

        ch.start_worker = start_worker
        real_consumer = ch.Consumer

        class TimedConsumer(real_consumer):  # type: ignore[misc, valid-type]
            def consume(self, *x: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                msgs = timed("consumer.consume (wait)", super().consume)(*x, **kw)
                if msgs:
                    BATCHES.append((len(msgs), time.perf_counter() - t0))
                return msgs

        ch.Consumer = TimedConsumer
        token = issue_token(s, "bench", ["data_scientist"])
        out: dict[str, Any] = {}

        def drive() -> None:
            while not stopper_box:
                time.sleep(0.1)
            time.sleep(3.0)  # consumer group join
            if a.warmup:
                throughput(s, a.warmup, token, timeout_s=300)
                wait_quiet(s, max_s=60, threshold=0.25)
            procs = stack_processes(s)
            c0 = cpu_seconds(procs)
            WALL.clear(), CPU.clear(), CALLS.clear()
            BATCHES.clear()
            if a.rate:
                out["latency"] = command_latency(s, token, a.rate, a.seconds)
                n_done = int(a.rate * a.seconds)
                out["throughput"] = {"commands_per_s": a.rate, "seconds_to_last_event": a.seconds}
            else:
                out["throughput"] = throughput(s, a.n, token, timeout_s=600)
                n_done = a.n
            out["n"] = n_done
            c1 = cpu_seconds(procs)
            out["handler_cpu_s"] = time.process_time()
            out["cpu_other_components"] = {k: c1[k] - c0[k] for k in c0}
            stopper_box[0].event.set()

        t = threading.Thread(target=drive, daemon=True)
        t.start()
        ch.run(container)  # returns when drive() sets the stopper
        t.join(10)
        container.close()
    thr, n = out["throughput"], out["n"]
    if "latency" in out:
        print(f"\nlatency with the in-process handler at {a.rate}/s: {out['latency']}\n")
    else:
        print(
            f"\nthroughput with the in-process handler: {thr['commands_per_s']:.0f} commands/s "
            f"(N={n}, {thr['seconds_to_last_event']:.1f}s to the last event)\n"
        )
    sizes = [b for b, _ in BATCHES]
    if sizes:
        print(
            f"batches: {len(sizes)}, size min/mean/max "
            f"{min(sizes)}/{sum(sizes) / len(sizes):.0f}/{max(sizes)}, "
            f"consume() s/batch mean {sum(w for _, w in BATCHES) / len(BATCHES):.3f}\n"
        )
    print(
        "| handler step | calls | wall s | handler CPU s | wall - CPU (waiting) s "
        "| wall us/command |"
    )
    print("|---|---|---|---|---|---|")
    for k in WALL:
        print(
            f"| {k} | {CALLS[k]} | {WALL[k]:.2f} | {CPU[k]:.2f} | {WALL[k] - CPU[k]:.2f} | "
            f"{WALL[k] / n * 1e6:.0f} |"
        )
    print(
        "\nCPU seconds of the other components in that window:",
        ", ".join(f"{k} {v:.1f}" for k, v in out["cpu_other_components"].items()),
    )
    write_result(
        "diagnose_handler",
        {
            "n": n,
            "throughput": thr,
            "latency": out.get("latency"),
            "batches": BATCHES,
            "wall_s": WALL,
            "cpu_s": CPU,
            "calls": CALLS,
            "cpu_other_components": out["cpu_other_components"],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

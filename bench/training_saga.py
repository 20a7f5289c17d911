"""The training saga's costs, each against a baseline measured in the same run on the same stack:

1. Orchestration overhead per step: 20 runs whose steps do no work (StartTraining.faults.noop):
   (wall time from StartTraining on Kafka to TrainingCompleted on training.events, minus the time
   inside step work) / 4 steps, against one command's command -> event latency (RegisterModel on
   registry.commands to its event on registry.events). Target: at most 2.0x.
2. Concurrent sagas: runs completed per second with 50 no-work runs in flight (Temporal's
   published figure for one default worker is ~100 workflows/s, for comparison only).
3. Training time of the digits model (defaults: 20 epochs, 64 hidden units), in the child
   process the step worker uses, and the whole real saga (prepare, train, validate, register).

    .venv/bin/python bench/training_saga.py [--runs 20] [--concurrent 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _stack import kafka_conf  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from bench._stack import bench_stack, markdown_table  # noqa: E402
from config.settings import Settings  # noqa: E402
from infra.auth import issue_token  # noqa: E402

ENV = {
    "VERITAS_VAR_DIR": str(ROOT / "var" / "bench-training"),
    "VERITAS_KAFKA_PORT": "39192",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:39192",
    "VERITAS_PG_PORT": "35533",
    "VERITAS_API_PORT": "38100",
    "VERITAS_METRICS_PORT_BASE": "39201",
    "VERITAS_TRAINING_FAULT_INJECTION": "true",
}
NOOP = {"noop": True}


class Watch:
    """Reads an events topic from its end (read_committed) and remembers when each event came."""

    def __init__(self, s: Settings, topic: str) -> None:
        self.c = Consumer(
            {**kafka_conf(s), "group.id": f"b-{uuid.uuid4()}",
             "isolation.level": "read_committed", "enable.auto.commit": False}
        )  # fmt: skip
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts
        ]
        self.c.assign([TopicPartition(topic, p, e) for p, e in zip(parts, ends, strict=True)])
        self.seen: list[tuple[float, dict[str, Any]]] = []

    def until(self, done: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done(self.seen):
            for m in self.c.consume(500, 0.05):
                if not m.error():
                    self.seen.append((time.monotonic(), json.loads(m.value())))
        if not done(self.seen):
            raise TimeoutError("the events did not arrive in time")


def _envelope(ctype: str, payload: dict[str, Any], version: int = 1) -> tuple[str, bytes]:
    cid = str(uuid.uuid4())
    issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {
        "command_id": cid,
        "type": ctype,
        "schema_version": version,
        "issued_at": issued,
        "payload": payload,
    }
    return cid, json.dumps(body).encode()


def _send(p: Producer, tok: str, topic: str, key: str, value: bytes) -> float:
    p.produce(topic, key=key, value=value, headers=[("authorization", f"Bearer {tok}")])
    p.flush(10)
    return time.monotonic()


def _register(p: Producer, tok: str, name: str) -> bytes:
    payload = {"name": name, "description": "bench", "intended_use": "u", "limitations": "l"}
    return _envelope("RegisterModel", payload, 2)[1]


def command_latency(s: Settings, p: Producer, tok: str, n: int = 20) -> list[float]:
    out = []
    for _ in range(n):
        watch = Watch(s, "registry.events")
        name = f"lat-{uuid.uuid4().hex[:8]}"
        sent = _send(p, tok, "registry.commands", name, _register(p, tok, name))
        watch.until(lambda seen, n=name: any(e["payload"].get("name") == n for _, e in seen), 60)
        out.append(next(t for t, e in watch.seen if e["payload"].get("name") == name) - sent)
        watch.c.close()
    return out


def _start(p: Producer, tok: str, model: str, faults: dict[str, Any] | None) -> float:
    payload: dict[str, Any] = {"model_name": model, "dataset_uri": "sklearn:digits"}
    if faults:
        payload["faults"] = faults
    return _send(p, tok, "training.commands", model, _envelope("StartTraining", payload)[1])


def _ended(seen: list[tuple[float, dict[str, Any]]]) -> dict[str, tuple[float, dict[str, Any]]]:
    return {
        e["aggregate_id"]: (t, e)
        for t, e in seen
        if e["type"] in ("TrainingCompleted", "TrainingFailed")
    }


def orchestration(s: Settings, p: Producer, tok: str, model: str, runs: int) -> list[float]:
    """Per step: (wall - step work) / 4, one run at a time."""
    out = []
    for _ in range(runs):
        watch = Watch(s, "training.events")
        sent = _start(p, tok, model, NOOP)
        watch.until(lambda seen: bool(_ended(seen)), 120)
        ((t_end, end),) = _ended(watch.seen).values()
        assert end["type"] == "TrainingCompleted", end
        work = sum(e["payload"]["duration_s"] for _, e in watch.seen
                   if e["type"] == "StepSucceeded" and e["aggregate_id"] == end["aggregate_id"])  # fmt: skip
        out.append((t_end - sent - work) / 4)
        watch.c.close()
    return out


def concurrent(s: Settings, p: Producer, tok: str, model: str, n: int) -> dict[str, float]:
    watch = Watch(s, "training.events")
    first = time.monotonic()
    for _ in range(n):
        _start(p, tok, model, NOOP)
    watch.until(lambda seen: len(_ended(seen)) >= n, 600)
    ends = _ended(watch.seen)
    assert all(e["type"] == "TrainingCompleted" for _, e in ends.values())
    last = max(t for t, _ in ends.values())
    return {"runs": float(n), "seconds": last - first, "runs_per_s": n / (last - first)}


def real_run(s: Settings, p: Producer, tok: str, model: str) -> dict[str, float]:
    watch = Watch(s, "training.events")
    sent = _start(p, tok, model, None)
    watch.until(lambda seen: bool(_ended(seen)), 900)
    ((t_end, end),) = _ended(watch.seen).values()
    steps = {e["payload"]["step"]: e["payload"]["duration_s"] for _, e in watch.seen
             if e["type"] == "StepSucceeded" and e["payload"]["kind"] == "run"}  # fmt: skip
    return {
        "saga_s": t_end - sent,
        **{f"{k}_s": v for k, v in steps.items()},
        "completed": float(end["type"] == "TrainingCompleted"),
    }


def training_only() -> dict[str, float]:
    """The digits model trained in-process here (the child's work without the process start)."""
    from ml import datasets, prepare
    from ml.train import Hyperparameters, train

    snap = prepare.prepare(datasets.load("sklearn:digits"), seed=0)
    started = time.perf_counter()
    result = train(snap, Hyperparameters.from_dict({}), "cpu")
    return {
        "train_s": time.perf_counter() - started,
        "holdout_accuracy": float(result.history[-1]["holdout_accuracy"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=50)
    args = ap.parse_args()
    with bench_stack(ENV, "training") as s:
        tok = issue_token(s, "bench", ["data_scientist"])
        p = Producer(
            {
                **kafka_conf(s),
                "enable.idempotence": True,
                "linger.ms": 1,
            }
        )
        model = f"bench-{uuid.uuid4().hex[:6]}"
        _send(p, tok, "registry.commands", model, _register(p, tok, model))
        time.sleep(2)
        orchestration(s, p, tok, model, 2)  # warm-up: the orchestrator's and worker's first run
        base = command_latency(s, p, tok)
        per_step = orchestration(s, p, tok, model, args.runs)
        conc = concurrent(s, p, tok, model, args.concurrent)
        real = real_run(s, p, tok, model)
    trained = training_only()
    b, o = statistics.median(base), statistics.median(per_step)
    rows = [
        [f"orchestration overhead per step (median of {args.runs} no-work runs)", f"{o * 1000:.0f} ms",
         f"command -> event {b * 1000:.0f} ms", f"{o / b:.2f}", "<= 2.0"],
        [f"concurrent sagas ({args.concurrent} no-work runs in flight)", f"{conc['runs_per_s']:.1f} runs/s",
         "Temporal ~100 workflows/s per default worker (published)", "-", "reported"],
        ["digits training, in process (20 epochs, 64 hidden)", f"{trained['train_s']:.2f} s",
         f"holdout accuracy {trained['holdout_accuracy']:.3f}", "-", "reported"],
        ["the real saga, digits (prepare, train, validate, register)", f"{real['saga_s']:.1f} s",
         ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in real.items() if k.endswith("_s") and k != "saga_s"), "-", "reported"],
    ]  # fmt: skip
    print(markdown_table(["measure", "value", "baseline (same run)", "ratio", "target"], rows))
    print(json.dumps({"command_event_ms": [x * 1000 for x in base], "per_step_ms": [x * 1000 for x in per_step],
                      "concurrent": conc, "real": real, "training": trained}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

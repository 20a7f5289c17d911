"""The serving bench's baselines, each run as its own process (the bench's driver never imports
torch): written independently of ``serving/``, so a slow ``serving`` cannot slow them too.

``python bench/_serving_baselines.py plain SERVERS TOPIC RESULTS GROUP N BATCH DELIVERY ARTIFACT``
    one plain process, no Ray: consume up to BATCH requests, ``orjson.loads`` each, one torch
    forward pass, one result per request, then (``exactly_once``) one Kafka transaction with the
    results and the offsets, or (``at_least_once``) flush + offset commit. Prints JSON stats.
``python bench/_serving_baselines.py torch N BATCH ARTIFACT``
    the same model on pre-decoded float32 tensors in batches of BATCH: the physical limit.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import torch
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml.model import load_model  # noqa: E402
from tests.helpers import sasl_conf, servers_conf  # noqa: E402


def _model(artifact: str) -> tuple[torch.nn.Module, list[str]]:
    torch.set_num_threads(1)
    model, manifest = load_model(Path(artifact))
    with torch.inference_mode():
        model(torch.zeros(512, len(manifest["input_schema"]["features"])))
    return model, [str(c) for c in manifest["classes"]]


def plain(
    servers: str, topic: str, results: str, group: str, n: int, batch: int, delivery: str, art: str
) -> None:
    model, classes = _model(art)
    eos = delivery == "exactly_once"
    consumer = Consumer(
        {
            **servers_conf(servers),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    pconf = {**servers_conf(servers), "linger.ms": 1, "enable.idempotence": True}
    if eos:
        pconf |= {
            "transactional.id": f"{group}-tx",
            "retry.backoff.ms": 2,
            "retry.backoff.max.ms": 10,
        }
    producer = Producer(pconf)
    if eos:
        producer.init_transactions(30)
    consumer.subscribe([topic])
    done, first, batches, cpu0 = 0, None, 0, 0.0
    while done < n:
        msgs = [m for m in consumer.consume(batch, 0.005) if m.error() is None]
        if not msgs:
            continue
        started = time.perf_counter()
        if first is None:
            first, cpu0 = started, time.process_time()
        reqs = [orjson.loads(m.value()) for m in msgs]
        x = torch.tensor([r["features"] for r in reqs], dtype=torch.float32)
        with torch.inference_mode():
            conf, idx = torch.softmax(model(x), dim=1).max(dim=1)
        latency_ms = (time.perf_counter() - started) * 1000
        if eos:
            producer.begin_transaction()
        for r, c, p in zip(reqs, idx.tolist(), conf.tolist(), strict=True):
            out = {
                "request_id": r["request_id"],
                "model_name": r["model_name"],
                "model_version": "plain",
                "prediction": classes[c],
                "confidence": p,
                "latency_ms": round(latency_ms, 3),
                "correlation_id": r.get("correlation_id"),
            }
            producer.produce(results, orjson.dumps(out), r["request_id"].encode())
        offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            offsets[(m.topic(), m.partition())] = m.offset() + 1
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if eos:
            producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        else:
            producer.flush(30)
            consumer.commit(offsets=tps, asynchronous=False)
        done += len(msgs)
        batches += 1
    elapsed = time.perf_counter() - (first or time.perf_counter())
    cpu = time.process_time() - cpu0  # every thread of the process, librdkafka's included
    consumer.close()
    print(json.dumps({"rows": done, "batches": batches, "elapsed_s": elapsed, "cpu_s": cpu}))


def torch_limit(n: int, batch: int, art: str) -> None:
    model, _ = _model(art)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(0, 16, size=(n, 64)).astype(np.float32))
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n, batch):
            conf, idx = torch.softmax(model(x[i : i + batch]), dim=1).max(dim=1)
            idx.tolist(), conf.tolist()  # the values a result needs, as Python numbers
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": n, "elapsed_s": elapsed, "rate": n / elapsed}))


def ingress(servers: str, topic: str, results: str, n: int, batch: int, spec_json: str) -> None:
    """``serving``'s own IngressLoop and ModelHost in a plain process (the batch-size sweep)."""
    from serving.host import ModelHost
    from serving.kafka_ingress import IngressConfig, IngressLoop

    torch.set_num_threads(1)
    host = ModelHost()
    host.apply({"models": {"digits": {"production": json.loads(spec_json)}}})
    group = f"sweep-{time.time_ns()}"
    cfg = IngressConfig(servers, topic, results, group, group, max_batch=batch, client=sasl_conf())
    loop = IngressLoop(cfg, lambda: host.snapshot)
    cpu0 = time.process_time()
    loop.start()
    while loop.consumed < n and loop.error is None:
        time.sleep(0.005)
    cpu = time.process_time() - cpu0
    loop.stop()
    print(json.dumps({"rows": loop.consumed, "batches": loop.batches, "cpu_s": cpu}))


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "plain":
        plain(args[0], args[1], args[2], args[3], int(args[4]), int(args[5]), args[6], args[7])
    elif kind == "ingress":
        ingress(args[0], args[1], args[2], int(args[3]), int(args[4]), args[5])
    else:
        torch_limit(int(args[0]), int(args[1]), args[2])

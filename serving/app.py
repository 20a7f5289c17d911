"""The Ray Serve application: one ``ModelServer`` deployment that serves every model.

Each replica holds every configured model's production version and optional canary (a few
hundred KiB each here) in one process that imports torch once, and runs an ``IngressLoop`` on a
thread: the replica itself consumes ``inference.requests`` in the serving consumer group and
produces ``inference.results``, so no request crosses a Serve handle on the Kafka path. The
handle methods are for direct callers: ``predict`` (one request, dynamically batched with
``@serve.batch``), ``predict_block`` (a list), ``status``, ``reports`` and ``metrics_text``.

What is served is the deployment's ``user_config`` (``serving.host``); Serve calls
``reconfigure`` with it, which loads, verifies and warms new versions on a worker thread (the
replica keeps answering handle calls and the ingress thread keeps consuming), then swaps one
reference. Init settings (``ServerSettings``) are fixed for a replica's life.

``build(args)`` is the application builder that ``serving.control`` names in its declarative
config (``import_path: serving.app:build``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ray import serve
from ray.serve import Application

from serving import metrics
from serving.batching import answer_messages, answer_objects
from serving.host import ModelHost
from serving.kafka_ingress import IngressConfig, IngressLoop
from serving.protocol import dumps

log = logging.getLogger("serving.app")
DEPLOYMENT = "ModelServer"
DEFAULT_MAX_BATCH = 256
DEFAULT_BATCH_WAIT_S = 0.002


@dataclass(frozen=True)
class ServerSettings:
    """A replica's fixed settings (the deployment's init argument)."""

    ingress: dict[str, Any] | None = None  # IngressConfig fields; None: handle calls only
    device: str = "auto"  # auto: cuda when torch sees a GPU
    torch_threads: int = 1
    warm_rows: int = 512
    metrics_port: int | None = None  # base port (+ replica rank); 0: any free port; None: off
    metrics_addr: str = "127.0.0.1"
    report_topic: str | None = None  # reports (refusals, swaps) also go here, as JSON
    report_bootstrap_servers: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ServerSettings:
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown server setting(s) {sorted(unknown)}")
        return cls(**raw)


def _report_sink(settings: ServerSettings) -> Any:
    if not settings.report_topic:
        return None
    from confluent_kafka import Producer

    servers = settings.report_bootstrap_servers or (settings.ingress or {}).get("bootstrap_servers")
    security = (settings.ingress or {}).get("client") or {}
    producer = Producer({"bootstrap.servers": servers, **security, "enable.idempotence": True})
    topic = settings.report_topic

    def send(report: dict[str, Any]) -> None:
        key = f"{report.get('model_name')}".encode()
        producer.produce(topic, dumps(report), key)
        producer.flush(10.0)

    return send


@serve.deployment(name=DEPLOYMENT, max_ongoing_requests=2 * DEFAULT_MAX_BATCH)
class ModelServer:
    """Serves every model named in ``user_config`` (see the module docstring)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = ServerSettings.from_dict(settings)
        from serving import runtime  # torch: only replicas import it

        runtime.set_threads(self.settings.torch_threads)
        self.device = runtime.pick_device(self.settings.device)
        ctx = serve.get_replica_context()
        self.replica = ctx.replica_id.unique_id
        self.host = ModelHost(
            device=self.device,
            warm_rows=self.settings.warm_rows,
            on_report=_report_sink(self.settings),
            origin=self.replica,
        )
        self.ingress: IngressLoop | None = None
        self.rank: int | None = None
        self.digest: str | None = None
        self.metrics_port: int | None = None
        self.started = time.time()

    async def reconfigure(self, config: dict[str, Any], rank: Any = None) -> None:
        """Apply ``user_config``: batch knobs at once, versions loaded off the event loop."""
        batch = config.get("batch") or {}
        batched: Any = self._batched  # @serve.batch's wrapper carries the setters
        batched.set_max_batch_size(int(batch.get("max_size", DEFAULT_MAX_BATCH)))
        batched.set_batch_wait_timeout_s(float(batch.get("wait_s", DEFAULT_BATCH_WAIT_S)))
        new_rank = int(rank.rank) if rank is not None and hasattr(rank, "rank") else self.rank
        if new_rank != self.rank and self.ingress is not None:
            # Ranks are compacted after a surge: the transactional id follows the rank, so that a
            # later replica given this replica's old rank cannot fence this one.
            await asyncio.to_thread(self.ingress.stop)
            self.ingress = None
        self.rank = new_rank
        reports = await asyncio.to_thread(self.host.apply, config)
        for r in reports:
            if r["kind"] != "serving":
                log.warning("serving report: %s", r)
        self.digest = config.get("digest")
        self._start_side_services()

    def _start_side_services(self) -> None:
        rank = self.rank or 0
        if self.settings.metrics_port is not None and self.metrics_port is None:
            base = self.settings.metrics_port
            self.metrics_port = metrics.serve_http(
                base + rank if base else 0, self.settings.metrics_addr
            )
        if self.settings.ingress is not None and self.ingress is None:
            raw = dict(self.settings.ingress)
            # A restarted replica takes its predecessor's rank, so the same transactional id:
            # init_transactions then aborts the dead one's open transaction at once.
            prefix = raw.get("transactional_id") or raw.get("group_id") or "veritas-serving"
            suffix = str(self.rank) if self.rank is not None else self.replica
            raw["transactional_id"] = f"{prefix}-{suffix}"
            self.ingress = IngressLoop(IngressConfig.from_dict(raw), lambda: self.host.snapshot)
            self.ingress.start()

    async def predict(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request (batched with concurrent calls by ``@serve.batch``)."""
        result: dict[str, Any] = await self._batched(request)
        return result

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S)
    async def _batched(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return answer_objects(self.host.snapshot, requests, time.perf_counter()).answers

    async def predict_block(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Many requests in one call (the cheap way through a handle: ~5 ms of Serve per call)."""
        return answer_objects(self.host.snapshot, requests, time.perf_counter(), "block").answers

    async def predict_messages(
        self, messages: list[tuple[bytes | None, bytes | None]]
    ) -> list[tuple[bytes, bytes]]:
        """Raw Kafka ``(key, value)`` requests in, ``(key, result JSON)`` out: what a bridge
        process would send (``bench/serving_throughput.py`` measures that design with it)."""
        out = answer_messages(self.host.snapshot, messages, time.perf_counter())
        return [
            (key or str(a.get("request_id") or "").encode(), dumps(a))
            for key, a in zip(out.keys, out.answers, strict=True)
        ]

    def status(self) -> dict[str, Any]:
        snap = self.host.snapshot
        return {
            "replica": self.replica,
            "pid": os.getpid(),
            "rank": self.rank,
            "device": self.device,
            "generation": snap.generation,
            "digest": self.digest,
            "versions": snap.versions(),
            "ingress": self.ingress.status() if self.ingress else None,
            "metrics_port": self.metrics_port,
            "settings": asdict(self.settings),
            "started": self.started,
        }

    def reports(self, since: int = 0) -> list[dict[str, Any]]:
        return self.host.reports(since)

    def refusals(self, since: int = 0) -> list[dict[str, Any]]:
        return self.host.refusals(since)

    def metrics_text(self) -> bytes:
        return metrics.metrics_text()

    def check_health(self) -> None:
        if self.ingress is not None and not self.ingress.healthy:
            raise RuntimeError(self.ingress.error or "the Kafka ingress thread stopped")

    def __del__(self) -> None:
        ingress = getattr(self, "ingress", None)
        if ingress is not None:
            ingress.stop(timeout=10.0)


def build(args: dict[str, Any]) -> Application:
    """The application builder: ``args`` are ``ServerSettings`` fields."""
    settings = ServerSettings.from_dict(dict(args))
    return ModelServer.bind(asdict(settings))  # type: ignore[attr-defined, no-any-return]

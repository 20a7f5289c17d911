"""Serving metrics on a registry of their own (prometheus-client; no torch, no Ray).

Latency is observed once per (batch, version) with the batch's row count as the weight: every row
of one batch is taken off the topic and predicted together, so a per-row observation would only
repeat the same value n times, at ~0.5 us a row. ``WeightedHistogram`` keeps the bucket counts
itself and exposes them as an ordinary Prometheus histogram.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class WeightedHistogram(Collector):
    """A labelled histogram whose ``observe`` takes a count (one lock, no per-row work)."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation = name, documentation
        self.labels = tuple(labels)
        self.bounds = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, ...], value: float, count: int = 1) -> None:
        if count <= 0:
            return
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            buckets, total = self._series.setdefault(labels, ([0] * (len(self.bounds) + 1), [0.0]))
            buckets[i] += count
            total[0] += value * count

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        with self._lock:
            items = [(k, list(b), t[0]) for k, (b, t) in self._series.items()]
        for labels, counts, total in items:
            cumulative, running = [], 0
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                running += n
                cumulative.append((_bound(bound), float(running)))
            family.add_metric(list(labels), cumulative, total)
        yield family


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


LATENCY = WeightedHistogram(
    "veritas_serving_latency_seconds",
    "Server time from taking a request off the topic (or the handle call) to its prediction",
    ("model", "version"),
    LATENCY_BUCKETS,
)
REGISTRY.register(LATENCY)
REQUESTS = Counter(
    "veritas_serving_predictions_total",
    "Requests answered with a prediction",
    ("model", "version", "slot"),
    registry=REGISTRY,
)
ERRORS = Counter(
    "veritas_serving_errors_total",
    "Requests answered with an error result",
    ("reason_code",),
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "veritas_serving_batch_rows",
    "Requests per consumed batch (or @serve.batch call)",
    ("path",),
    buckets=ROW_BUCKETS,
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "veritas_serving_commit_seconds",
    "Offsets + commit of one batch (Kafka transaction, or flush + offset commit)",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TXN_ROWS = Histogram(
    "veritas_serving_transaction_rows",
    "Results per Kafka transaction (group commit: batches answered during the previous commit)",
    buckets=(*ROW_BUCKETS, 8192, 16384),
    registry=REGISTRY,
)
ABORTS = Counter(
    "veritas_serving_aborts_total",
    "Batches whose transaction aborted (their requests are read again)",
    registry=REGISTRY,
)
LAG = Gauge(
    "veritas_serving_consumer_lag",
    "Requests not yet consumed, per partition (librdkafka statistics)",
    ("topic", "partition"),
    registry=REGISTRY,
)
SWAPS = Counter(
    "veritas_serving_swaps_total",
    "Versions put into service",
    ("model", "slot"),
    registry=REGISTRY,
)
REFUSALS = Counter(
    "veritas_serving_load_refused_total",
    "Versions refused by the loading rule",
    ("model", "reason"),
    registry=REGISTRY,
)


def metrics_text() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)


def serve_http(port: int, addr: str = "127.0.0.1") -> int:
    """Expose ``/metrics`` on ``addr:port`` (0: any free port); the port bound."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return int(server.server_port)

"""Training metrics on the API's /metrics, read from the training read models when scraped (so
they hold across restarts and count each run once, whatever was redelivered): runs by status,
step attempts and their durations by step and outcome, retries and compensations."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from infra.context import Infra


class TrainingCollector(Collector):
    def __init__(self, c: Infra) -> None:
        self.c = c

    def collect(self) -> Iterator[Metric]:
        try:
            with self.c.read_model_connection() as conn:
                runs = conn.execute(
                    "SELECT status, count(*) FROM rm_training_runs GROUP BY status"
                ).fetchall()
                steps = conn.execute(
                    "SELECT step, kind, status, count(*), coalesce(sum(duration_s), 0),"
                    " count(*) FILTER (WHERE attempt > 1) FROM rm_training_steps GROUP BY step, kind, status"
                ).fetchall()
        except Exception:  # the database away: no training metrics this scrape, never a 500
            return
        by_status = GaugeMetricFamily(
            "veritas_training_runs", "Training runs by status", labels=["status"]
        )
        for status, n in runs:
            by_status.add_metric([status], n)
        yield by_status
        attempts = CounterMetricFamily(
            "veritas_training_step_attempts", "Step attempts", labels=["step", "kind", "status"]
        )
        seconds = CounterMetricFamily(
            "veritas_training_step_seconds",
            "Time in step attempts",
            labels=["step", "kind", "status"],
        )
        retries = CounterMetricFamily(
            "veritas_training_retries", "Attempts after the first", labels=["step", "kind"]
        )
        compensations = CounterMetricFamily(
            "veritas_training_compensations", "Compensations run", labels=["step", "status"]
        )
        retried: dict[tuple[str, str], int] = {}
        for step, kind, status, n, total, again in steps:
            attempts.add_metric([step, kind, status], n)
            seconds.add_metric([step, kind, status], float(total))
            retried[(step, kind)] = retried.get((step, kind), 0) + again
            if kind == "compensate":
                compensations.add_metric([step, status], n)
        for (step, kind), n in retried.items():
            retries.add_metric([step, kind], n)
        yield from (attempts, seconds, retries, compensations)


def register(c: Infra) -> None:
    REGISTRY.register(TrainingCollector(c))

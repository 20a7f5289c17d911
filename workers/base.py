"""What every worker shares: signal-driven shutdown and a Prometheus metrics endpoint."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, Message
from prometheus_client import Info, start_http_server

from config.services import metrics_port
from infra import logs
from veritas.bootstrap import Container
from workers.recovery import EXIT_FATAL, Fatal

log = logging.getLogger("veritas.worker")


class Stopper:
    def __init__(self) -> None:
        self.event = threading.Event()
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, *_: object) -> None:
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


WORKER = Info("veritas_worker", "Which worker process answers on this metrics port")


def start_worker(container: Container, name: str) -> Stopper:
    logs.configure(name, container.settings.log_level)
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise walk it all and pause the loop for tens of ms.
    gc.collect()
    gc.freeze()
    WORKER.info({"name": name, "pid": str(os.getpid())})
    start_http_server(metrics_port(container.settings, name), addr="127.0.0.1")
    return Stopper()


def main(run: Callable[[], None]) -> None:
    """Run a worker; a fatal client error ends the process with EXIT_FATAL for the supervisor to
    start a fresh one."""
    try:
        run()
    except Fatal as exc:
        log.error("fatal Kafka error, exiting for the supervisor to restart: %s", exc)
        logging.shutdown()
        sys.exit(EXIT_FATAL)


def consume_batch(
    consumer: Consumer, max_records: int, timeout_s: float, previous: int = 0
) -> list[Message]:
    """Wait up to timeout_s for the first record, then take what is buffered. Under load (the
    previous batch had `BUSY` records or more) linger up to LINGER_S to fill the batch: taking
    only what is buffered makes tiny batches under steady load, each paying a commit; lingering
    when idle only adds latency. (consume(n, t) alone waits the whole timeout unless n arrive.)"""
    first = consumer.consume(1, timeout_s)
    if not first:
        return []
    linger = LINGER_S if previous >= BUSY else 0.0
    rest = consumer.consume(max_records - 1, linger) if max_records > 1 else []
    out = []
    for m in (*first, *rest):
        err = m.error()
        if err is None:
            out.append(m)
        elif err.fatal():
            raise Fatal(f"consumer: {err}")
        else:  # transient (broker restarting, partition EOF): librdkafka recovers by itself
            log.debug("consumer: %s", err)
    return out


LINGER_S, BUSY = 0.015, 8

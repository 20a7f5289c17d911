"""What every worker does about faults: which errors are transient (retried with backoff, for as
long as it takes), and librdkafka's rules for a transaction's errors.

Transactions (librdkafka's documented rules): a retriable error may be retried with the same call;
an abortable one needs abort_transaction() and the input re-read; a fatal one (fenced by a newer
instance with the same transactional.id, or a producer in an unknown state) leaves the producer
unusable. Every call is bounded by a timeout: a broker restart can no longer hang a worker. A worker
that meets a fatal error exits with EXIT_FATAL, and the supervisor starts a fresh one, whose
init_transactions() aborts whatever its predecessor left open.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential_jitter,
)

from infra.faults import transient

log = logging.getLogger("veritas.recovery")
EXIT_FATAL = 70
EXIT_HUNG = 71


class Watchdog:
    """Ends the process when a guarded call outlives its limit. A client call can ignore its own
    timeout: after a broker restart, librdkafka's send_offsets_to_transaction() was seen to never
    return although it was given 10 s. The supervisor then starts a fresh process, whose
    init_transactions() settles the transaction that was left open."""

    def __init__(self) -> None:
        self._deadlines: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, what: str, limit_s: float) -> Iterator[None]:
        key = threading.get_ident()
        with self._lock:
            self._deadlines[key] = (time.monotonic() + limit_s, what)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._deadlines.pop(key, None)

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self._lock:
                late = [what for deadline, what in self._deadlines.values() if now > deadline]
            if late:
                log.critical("%s did not return within its limit; exiting for a restart", late[0])
                logging.shutdown()
                os._exit(EXIT_HUNG)


WATCHDOG = Watchdog()


class Fatal(Exception):
    """The worker's clients are unusable: it exits and the supervisor restarts it."""


class Abort(Exception):
    """The current Kafka transaction must be aborted and its input re-read."""


class Stopped(Exception):
    """The worker was asked to stop while it waited for a dependency."""


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s failed (attempt %d, %s: %s); retrying in %.1fs",
            what,
            state.attempt_number,
            type(exc).__name__,
            exc,
            state.upcoming_sleep,
        )

    return before_sleep


def until_it_works(stop: threading.Event, what: str, fn: Callable[[], Any]) -> Any:
    """Call fn, retrying transient faults with exponential backoff and jitter until it works or
    the worker is stopped (then Stopped). Any other error is raised at once."""
    retrying = Retrying(
        retry=retry_if_exception(transient),
        wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.3),
        stop=stop_when_event_set(stop),
        before_sleep=_log_retry(what),
        reraise=True,
    )
    try:
        return retrying(fn)
    except Exception as exc:
        if stop.is_set() and transient(exc):
            raise Stopped(what) from exc
        raise


def txn_call(what: str, fn: Callable[[float], Any], timeout_s: float, budget_s: float) -> None:
    """One transactional call, each try bounded by timeout_s, retriable errors retried within
    budget_s; then classified: Abort (abort and re-read) or Fatal (restart the worker)."""

    def retriable(exc: BaseException) -> bool:
        err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        return (
            isinstance(err, KafkaError)
            and err.retriable()
            and not err.fatal()
            and not err.txn_requires_abort()
        )

    def guarded(timeout: float) -> Any:
        with WATCHDOG.guard(what, timeout + 10.0):
            return fn(timeout)

    try:
        Retrying(
            retry=retry_if_exception(retriable),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            stop=stop_after_delay(budget_s),
            before_sleep=_log_retry(what),
            reraise=True,
        )(guarded, timeout_s)
    except KafkaException as exc:
        raise classify(exc, what) from exc


def classify(exc: KafkaException, what: str) -> Exception:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError) and err.fatal():
        return Fatal(f"{what}: {err}")
    return Abort(f"{what}: {err}")


def abort(producer: Producer, timeout_s: float, budget_s: float) -> None:
    """Abort the open transaction (a no-op without one). A producer that cannot abort is Fatal."""
    try:
        txn_call("abort_transaction", producer.abort_transaction, timeout_s, budget_s)
    except Abort as exc:
        cause = exc.__cause__
        err = cause.args[0] if isinstance(cause, KafkaException) and cause.args else None
        if isinstance(err, KafkaError) and err.code() == KafkaError._STATE:
            return  # no transaction in progress
        raise Fatal(str(exc)) from exc

"""Fault classification and librdkafka's transaction rules, with errors as the client raises them."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException
from eventsourcing import persistence

from infra.faults import transient
from workers.recovery import (
    EXIT_HUNG,
    WATCHDOG,
    Abort,
    Fatal,
    Stopped,
    abort,
    txn_call,
    until_it_works,
)


def _kafka(code: int = KafkaError._TIMED_OUT, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "test", **flags))


def test_dependencies_going_away_are_transient_and_bugs_are_not() -> None:
    assert transient(psycopg.OperationalError("server closed the connection"))
    assert transient(persistence.OperationalError("down"))
    assert transient(ConnectionError("refused"))
    assert transient(_kafka(retriable=True))
    assert not transient(_kafka(retriable=True, fatal=True))
    assert not transient(_kafka())
    assert not transient(psycopg.DataError("invalid byte sequence"))
    assert not transient(ValueError("a bug"))


def test_a_retriable_transaction_error_is_retried_until_it_works() -> None:
    calls: list[float] = []

    def commit(timeout: float) -> None:
        calls.append(timeout)
        if len(calls) < 3:
            raise _kafka(retriable=True)

    txn_call("commit", commit, 0.5, 10)
    assert calls == [0.5, 0.5, 0.5]  # every try bounded by the timeout


def test_abortable_fatal_and_exhausted_errors_are_classified() -> None:
    def raising(exc: Exception):  # type: ignore[no-untyped-def]
        def call(_: float) -> None:
            raise exc

        return call

    with pytest.raises(Abort):
        txn_call("commit", raising(_kafka(txn_requires_abort=True)), 0.1, 1)
    with pytest.raises(Fatal):
        txn_call("commit", raising(_kafka(KafkaError._FENCED, fatal=True)), 0.1, 1)
    with pytest.raises(Abort):  # still timing out when the budget is spent
        txn_call("commit", raising(_kafka(retriable=True)), 0.01, 0.2)


class _Producer:
    def __init__(self, exc: Exception | None) -> None:
        self.exc = exc

    def abort_transaction(self, timeout: float) -> None:
        if self.exc:
            raise self.exc


def test_aborting_without_a_transaction_is_a_no_op_and_a_failed_abort_is_fatal() -> None:
    abort(_Producer(None), 0.1, 1)  # type: ignore[arg-type]
    abort(_Producer(_kafka(KafkaError._STATE)), 0.1, 1)  # type: ignore[arg-type]
    with pytest.raises(Fatal):
        abort(_Producer(_kafka(KafkaError._FENCED, fatal=True)), 0.1, 1)  # type: ignore[arg-type]


def test_until_it_works_waits_out_transient_faults_and_stops_on_request() -> None:
    stop = threading.Event()
    tries: list[int] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise psycopg.OperationalError("restarting")
        return "done"

    assert until_it_works(stop, "flaky", flaky) == "done" and len(tries) == 3
    with pytest.raises(ValueError):  # not transient: at once, no retry
        until_it_works(stop, "bug", lambda: (_ for _ in ()).throw(ValueError("bug")))

    def down() -> None:
        stop.set()
        raise psycopg.OperationalError("still down")

    with pytest.raises(Stopped):
        until_it_works(stop, "down", down)


def test_a_call_that_outlives_its_limit_ends_the_process_for_a_restart() -> None:
    code = (
        "import time\nfrom workers.recovery import WATCHDOG\n"
        "with WATCHDOG.guard('send_offsets_to_transaction', 0.5):\n    time.sleep(30)\n"
    )
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == EXIT_HUNG
    assert time.monotonic() - started < 10
    assert "send_offsets_to_transaction did not return" in r.stderr


def test_a_call_within_its_limit_is_left_alone() -> None:
    with WATCHDOG.guard("quick", 5.0):
        time.sleep(0.6)  # the watchdog looked at least once meanwhile

"""workers.base.consume_batch: wait for the first record, then linger only under load."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from workers.base import BUSY, LINGER_S, consume_batch
from workers.recovery import Fatal


class Msg:
    def __init__(self, bad: bool = False, fatal: bool = False) -> None:
        self.err = KafkaError(KafkaError._TRANSPORT, "down", fatal=fatal) if bad or fatal else None

    def error(self) -> KafkaError | None:
        return self.err


class FakeConsumer:
    """Records each consume(n, timeout) call and hands out what it holds."""

    def __init__(self, held: list[Msg]) -> None:
        self.held = held
        self.calls: list[tuple[int, float]] = []

    def consume(self, n: int, timeout: float) -> list[Msg]:
        self.calls.append((n, timeout))
        out, self.held = self.held[:n], self.held[n:]
        return out


def _run(held: list[Msg], previous: int) -> tuple[list[Any], list[tuple[int, float]]]:
    c = FakeConsumer(held)
    got = consume_batch(c, 100, 0.2, previous)  # type: ignore[arg-type]
    return got, c.calls


def test_idle_takes_what_is_buffered_without_lingering() -> None:
    got, calls = _run([Msg() for _ in range(3)], previous=1)
    assert len(got) == 3
    assert calls == [(1, 0.2), (99, 0.0)]


def test_under_load_it_lingers_to_fill_the_batch() -> None:
    got, calls = _run([Msg() for _ in range(3)], previous=BUSY)
    assert len(got) == 3
    assert calls == [(1, 0.2), (99, LINGER_S)]


def test_nothing_arrives_and_errors_are_dropped() -> None:
    assert _run([], previous=BUSY) == ([], [(1, 0.2)])
    got, _ = _run([Msg(), Msg(bad=True), Msg()], previous=0)
    assert len(got) == 2 and all(m.error() is None for m in got)


def test_a_fatal_consumer_error_ends_the_worker() -> None:
    with pytest.raises(Fatal):
        _run([Msg(), Msg(fatal=True)], previous=0)

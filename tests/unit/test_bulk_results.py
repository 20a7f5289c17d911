"""The bulk rebuild reads a result written by CommandResult.to_bytes() without the model, and
leaves every other shape to the model, so that both give the status row the live projector
stores."""

from __future__ import annotations

import uuid

import orjson
import pytest

from events.results import CommandResult, EventRef
from projections.apply import STATUS_COLS, command_status_row
from projections.bulk import _plain_status

E1, A1 = uuid.uuid4(), uuid.uuid4()


def _model_row(value: bytes) -> tuple[object, ...]:
    row = command_status_row(value)
    return tuple(row[c] for c in STATUS_COLS)


@pytest.mark.parametrize(
    "result",
    [
        CommandResult(
            command_id="c-1",
            status="accepted",
            events=[EventRef(event_id=E1, aggregate_id=A1, version=3)],
        ),
        CommandResult(command_id="c-2", status="accepted"),
        CommandResult.rejected("c-3", "conflict", "expected v2, at v3", sub_code="stale"),
    ],
)
def test_a_result_as_the_handler_writes_it_is_read_without_the_model(
    result: CommandResult,
) -> None:
    fast = _plain_status(result.to_bytes())
    assert fast is not None
    assert fast[:5] == _model_row(result.to_bytes())[:5]
    assert orjson.loads(fast[5]) == _model_row(result.to_bytes())[5]


@pytest.mark.parametrize(
    "value",
    [
        # the model coerces these: upper-case UUIDs, a version given as a string
        {
            "command_id": "c",
            "status": "accepted",
            "events": [{"event_id": str(E1).upper(), "aggregate_id": str(A1), "version": 1}],
        },
        {
            "command_id": "c",
            "status": "accepted",
            "events": [{"event_id": str(E1), "aggregate_id": str(A1), "version": "1"}],
        },
        # the model ignores an unknown member
        {"command_id": "c", "status": "rejected", "reason_code": "x", "trace": 1},
        # the model refuses these
        {"command_id": "c", "status": "maybe"},
        {"status": "accepted"},
        {"command_id": "c", "status": "accepted", "events": [{"event_id": str(E1)}]},
        {"command_id": "c", "status": "accepted", "message": 7},
        [1, 2],
    ],
)
def test_any_other_shape_is_left_to_the_model(value: object) -> None:
    assert _plain_status(orjson.dumps(value)) is None


def test_undecodable_bytes_are_left_to_the_model() -> None:
    assert _plain_status(b"{not json") is None
    assert _plain_status(b"") is None
    assert _plain_status(None) is None

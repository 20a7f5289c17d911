"""What the write side accepts, the read side can always project: commands the decoder accepts
(unicode, big numbers within limits, deep-but-allowed free dicts, tags, metrics) give events that
load back through their bytes, fit a Kafka message, project with the pure projections into rows
both executors can write, fold in the bulk rebuild, and verify by DESIGN's rule from their bytes."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings

from events.catalog import EVENT_TYPES
from events.envelope import EventEnvelope, read_published, verify_published
from events.results import CommandResult
from projections import bulk
from projections.apply import PROJECTIONS
from projections.ops import Event, Insert
from tests.helpers import Rec, trust_of
from tests.strategies import Step, histories, message
from tests.unit.harness import SETTINGS, Harness
from tests.unit.test_poison import ParsingStore

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_history(steps: list[Step]) -> Harness:
    h = Harness(store=ParsingStore())
    for step in steps:
        (out,) = h.batch(message(h, step))
        assert isinstance(out, CommandResult) and out.status == "accepted", (step, out)
    return h


def storable(value: Any) -> None:
    """A row value both executors can write: psycopg's Jsonb (json module, no NaN) and the bulk
    rebuild's orjson; text without NUL."""
    if isinstance(value, dict | list):
        json.dumps(value, allow_nan=False)
        orjson.dumps(value)
    elif isinstance(value, str):
        assert "\x00" not in value


def records(h: Harness) -> list[Rec]:
    offsets: dict[str, int] = defaultdict(int)
    out = []
    for n in h.store.notifications(0, 1_000_000):
        out.append(
            Rec(n.topic, 0, offsets[n.topic], n.state, [("notification_id", str(n.id).encode())])
        )
        offsets[n.topic] += 1
    return out


@PROPERTY
@given(histories())
def test_accepted_commands_give_events_every_reader_can_keep(steps: list[Step]) -> None:
    h = run_history(steps)
    streams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for n in h.store.notifications(0, 1_000_000):
        assert len(n.state) <= SETTINGS.event_max_bytes
        env = EventEnvelope.from_bytes(n.state)  # the projector's and the store's reader
        EVENT_TYPES[env.type].model_validate(env.payload)  # rehydrating the aggregate
        streams[str(env.aggregate_id)].append(read_published(n.state))
        projection = PROJECTIONS.get(env.type)
        event = Event(
            env.type, str(env.aggregate_id), env.version, env.actor, env.occurred_at, env.payload
        )
        for op in projection(event) if projection else []:
            for value in (
                op.row if isinstance(op, Insert) else {**op.set, **op.keep, **op.append}
            ).values():
                storable(value)
    for stream in streams.values():
        assert verify_published(stream) is None
    fold = bulk.Fold(trust_of(SETTINGS))
    for rec in records(h):
        fold.record(rec)  # type: ignore[arg-type]  # raises on any event it does not believe
    assert len(fold.chains) == len(streams)
    assert fold.records == len(h.log())

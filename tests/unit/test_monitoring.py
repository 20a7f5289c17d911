"""The Monitor aggregate's invariants and the drift monitor's pure logic: joining, in-order
acknowledgement, windows with contiguous ids that never count a row twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from commands.monitoring import DEFAULT_POLICY
from domain.base import Meta
from domain.errors import AlreadyExists, InvariantViolation
from domain.monitoring import DEFAULTS, Monitor, monitor_id
from monitoring.joining import Acknowledger, Joiner, Row
from monitoring.windows import VersionWindows, bounds, positions_of
from sagas.retraining import policy as retraining_policy

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _meta(at: datetime = T0) -> Meta:
    return Meta("monitor", "corr", "cause", at)


def _check(window: int, severity: str | None = None) -> dict[str, Any]:
    return {
        "model_name": "m", "version": "1.0.0", "window_id": window, "score": 0.5,
        "severity": severity, "per_feature": {}, "drifted": [], "bounds": {"rows": 1},
        "method": {}, "report_sha256": None,
    }  # fmt: skip


def test_the_domain_defaults_are_the_commands_default_policy() -> None:
    assert DEFAULT_POLICY.model_dump(mode="json") == DEFAULTS


def test_window_ids_are_contiguous_per_version() -> None:
    m = Monitor(monitor_id("m"))
    m.record_drift(_check(1), None, _meta())
    with pytest.raises(AlreadyExists):
        m.record_drift(_check(1), None, _meta())
    with pytest.raises(InvariantViolation) as gap:
        m.record_drift(_check(3), None, _meta())
    assert gap.value.sub_code == "window_gap"
    m.record_drift(_check(2, "warning"), None, _meta())
    assert [e.type for e in m.pending] == ["DriftChecked", "DriftChecked", "DriftDetected"]


def test_critical_drift_retrains_once_per_cooldown_and_only_when_the_policy_says() -> None:
    training = {"model_name": "m", "dataset_uri": "sklearn:digits", "hyperparameters": {}}
    m = Monitor(monitor_id("m"))
    m.record_drift(_check(1, "critical"), training, _meta())
    assert "RetrainingTriggered" not in [e.type for e in m.pending]  # default: never
    m.set_policy("m", {**DEFAULTS, "retrain_on": "critical", "cooldown_s": 60}, _meta())
    for w, at in ((2, T0), (3, T0 + timedelta(seconds=30)), (4, T0 + timedelta(seconds=61))):
        m.record_drift(_check(w, "critical"), training, _meta(at))
    triggers = [e for e in m.pending if e.type == "RetrainingTriggered"]
    assert len(triggers) == 2  # windows 2 and 4; 3 was inside the cooldown
    detected = {str(e.event_id): e for e in m.pending if e.type == "DriftDetected"}
    assert all(
        detected[t.payload["drift_event_id"]].payload["window_id"] in (2, 4) for t in triggers
    )


def test_accuracy_below_the_factor_of_validation_drops() -> None:
    m = Monitor(monitor_id("m"))
    fields = {"model_name": "m", "version": "1.0.0", "n": 100, "bounds": {}}
    m.record_accuracy({**fields, "window_id": 1, "correct": 90}, 0.97, None, _meta())
    m.record_accuracy({**fields, "window_id": 2, "correct": 80}, 0.97, None, _meta())
    assert [e.type for e in m.pending] == [
        "AccuracyRecorded",
        "AccuracyRecorded",
        "AccuracyDropped",
    ]


def _rec(rid: str, topic: str) -> bytes:
    if topic == "inference.requests":
        return orjson.dumps({"request_id": rid, "model_name": "m", "features": [1.0]})
    return orjson.dumps({"request_id": rid, "model_name": "m", "model_version": "1.0.0",
                         "prediction": 1})  # fmt: skip


def test_joining_in_either_order_and_dropping_what_cannot_join() -> None:
    j = Joiner(timeout_s=10)
    assert j.add("inference.results", ("inference.results", 0, 5), _rec("a", "r"), 0) is True
    row = j.add(
        "inference.requests", ("inference.requests", 1, 2), _rec("a", "inference.requests"), 1
    )
    assert isinstance(row, Row) and row.version == "1.0.0" and row.result_pos[2] == 5
    assert j.add("inference.requests", ("inference.requests", 0, 3), b"{bad", 1) is False
    err = orjson.dumps({"request_id": "b", "model_name": "m", "error": "x", "reason_code": "y"})
    assert j.add("inference.results", ("inference.results", 0, 6), err, 1) is False
    j.add("inference.requests", ("inference.requests", 0, 4), _rec("c", "inference.requests"), 1)
    assert j.expire(5) == [] and j.expire(11) == [("inference.requests", 0, 4)]


def test_acks_are_released_in_offset_order_only() -> None:
    a = Acknowledger()
    for o in range(4):
        a.track(("t", 0, o), o)
    assert a.finish([("t", 0, 1), ("t", 0, 2)]) == []
    assert a.finish([("t", 0, 0)]) == [0, 1, 2]
    assert a.finish([("t", 0, 3)]) == [3] and len(a) == 0


def _row(i: int) -> Row:
    return Row(str(i), "m", "1.0.0", [float(i)], 1, ("inference.requests", 0, i),
               ("inference.results", 0, i), float(i))  # fmt: skip


def test_a_restarted_window_skips_rows_the_store_counts_and_keeps_the_rest() -> None:
    policy = {**DEFAULTS, "window_size": 3}
    vw = VersionWindows("m", "1.0.0", 0)
    for i in range(4):
        vw.add(_row(i))
    rows = vw.due(policy, 0)
    assert rows is not None and [r.request_id for r in rows] == ["0", "1", "2"]
    held = positions_of(bounds(rows)["positions"])
    assert vw.recorded(1, held) == rows and vw.last_id == 1
    after = VersionWindows("m", "1.0.0", 1, set(held))  # a fresh process, from the store
    assert [after.add(_row(i)) for i in range(4)] == [False, False, False, True]


def test_the_retraining_saga_starts_training_with_the_trigger() -> None:
    from uuid import uuid4

    from events.envelope import EventEnvelope

    env = EventEnvelope.model_construct(
        event_id=uuid4(), type="RetrainingTriggered",
        payload={"model_name": "m", "version": "1.0.0", "window_id": 2, "reason": "critical_drift",
                 "drift_event_id": "d1", "accuracy_event_id": None, "report_sha256": "ab" * 32,
                 "training": {"dataset_uri": "sklearn:digits", "hyperparameters": {"epochs": 3},
                              "from_version": "1.0.0"}, "cooldown_s": 60.0},
    )  # fmt: skip
    (cmd,) = retraining_policy(None, env)
    assert cmd.type == "StartTraining" and cmd.payload["trigger"]["drift_event_id"] == "d1"
    assert cmd.payload["hyperparameters"] == {"epochs": 3}

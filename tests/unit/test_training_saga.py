"""The training saga end to end in memory: the pure policy driven over the real command path
(process_batch, the TrainingRun aggregate, the in-memory event store), the way the orchestrator
drives it, with step outcomes scripted per test. Checks the event sequences: the happy path,
retries, timeouts, every failure's compensations in reverse order, cancellation, and that a
redelivered event changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.training import TrainingRun
from events.catalog import EVENT_TYPES
from events.envelope import EventEnvelope
from events.results import CommandResult
from sagas.training import Send, StepMessage, command_id, on_timer, policy, timers
from tests.unit.harness import SETTINGS, USERS, Harness

USERS.setdefault("svc", ["service"])
Outcome = Callable[[dict[str, Any]], dict[str, Any] | None]  # None: the worker never answers


def ok(result: dict[str, Any] | None = None) -> Outcome:
    return lambda _: {"outcome": "succeeded", "result": result or {}}


def fail(error: str, permanent: bool) -> Outcome:
    return lambda _: {"outcome": "failed", "error": error, "permanent": permanent}


RESULTS = {
    "data_preparation": {"snapshot": "snap-1", "dataset_sha256": "d" * 64},
    "model_training": {"artifact_sha256": "a" * 64, "manifest_sha256": "m" * 64},
    "model_validation": {"passed": True},
    "model_registration": {"version": "1.0.0", "submission_id": "s-1"},
}


@dataclass
class Sim:
    script: dict[tuple[str, str], list[Outcome]] = field(default_factory=dict)
    h: Harness = field(default_factory=lambda: Harness(settings=SETTINGS))
    seen: int = 0
    sent_ids: list[str] = field(default_factory=list)
    step_messages: list[dict[str, Any]] = field(default_factory=list)

    def start(self, **extra: Any) -> UUID:
        self.h.register_model("fraud")
        res = self.h.ok(
            "alice",
            "StartTraining",
            {"model_name": "fraud", "dataset_uri": "sklearn:digits", **extra},
        )
        return res.events[0].aggregate_id

    def run(self, rid: UUID) -> TrainingRun:
        return TrainingRun.rehydrate(rid, self.h.store.load(rid))

    def send(self, out: Send, cause: str, index: int) -> CommandResult:
        cid = command_id(cause, index, out.type)
        self.sent_ids.append(cid)
        return self.h.send("svc", out.type, out.payload, command_id=cid)

    def answer(self, msg: StepMessage) -> None:
        p = msg.payload
        self.step_messages.append(p)
        script = self.script.get((p["step"], p["kind"])) or [
            ok(RESULTS.get(p["step"]) if p["kind"] == "run" else {})
        ]
        outcome = (script.pop(0) if len(script) > 1 else script[0])(p)
        if outcome is None:
            return
        payload = {
            "run_id": p["saga_id"],
            "step": p["step"],
            "attempt": p["attempt"],
            "kind": p["kind"],
            **outcome,
        }
        self.h.send("svc", "RecordStepResult", payload, command_id=command_id(msg.id, 0, "result"))

    def pump(self, rid: UUID, until: Callable[[TrainingRun], bool] | None = None) -> list[str]:
        for _ in range(200):
            if until is not None and until(self.run(rid)):
                break
            log = self.h.log()[self.seen :]
            if not log:
                if not self.fire_timers(rid):
                    break
                continue
            for env in log:
                self.seen += 1
                self.handle(env)
        return [e.type for e in self.h.store.load(rid)]

    def handle(self, env: EventEnvelope) -> None:
        if env.aggregate_type != "TrainingRun":
            return
        run = self.run(env.aggregate_id)
        event = EVENT_TYPES[env.type].model_validate(env.payload)
        for i, out in enumerate(policy(run, event)):
            if isinstance(out, StepMessage):
                self.answer(out)
            else:
                self.send(out, str(env.event_id), i)

    def fire_timers(self, rid: UUID) -> bool:
        run = self.run(rid)
        due = timers(run)
        if not due:
            return False
        first = min(due, key=lambda t: t.at)
        self.h.now = max(self.h.now, first.at)  # time passes until the timer is due
        fired = False
        for i, out in enumerate(on_timer(run, first.key)):
            if isinstance(out, StepMessage):
                self.answer(out)
            else:
                self.send(out, f"{rid}:{first.key}", i)
            fired = True
        return fired


def types(stream: list[str], *keep: str) -> list[str]:
    return [t for t in stream if t in keep] if keep else stream


def test_the_happy_path_runs_each_step_once_then_completes() -> None:
    sim = Sim()
    rid = sim.start()
    stream = sim.pump(rid)
    assert stream == [
        "TrainingStarted",
        *["StepDispatched", "StepSucceeded"] * 4,
        "TrainingCompleted",
    ]
    done = sim.h.store.load(rid)[-1].payload
    assert done == {
        "model_name": "fraud",
        "version": "1.0.0",
        "artifact_sha256": "a" * 64,
        "submission_id": "s-1",
    }
    assert [m["step"] for m in sim.step_messages] == [
        "data_preparation",
        "model_training",
        "model_validation",
        "model_registration",
    ]
    # Each step gets what the earlier ones produced.
    assert sim.step_messages[1]["inputs"]["snapshot"] == "snap-1"
    assert sim.step_messages[2]["inputs"]["training"]["artifact_sha256"] == "a" * 64


def test_a_transient_failure_is_retried_with_backoff_and_leaves_no_compensation() -> None:
    sim = Sim(
        script={
            ("model_training", "run"): [fail("broker away", False), ok(RESULTS["model_training"])]
        }
    )
    rid = sim.start()
    stream = sim.pump(rid)
    assert "CompensationStarted" not in stream and stream[-1] == "TrainingCompleted"
    retry = [e for e in sim.h.store.load(rid) if e.type == "StepRetryScheduled"]
    assert len(retry) == 1 and retry[0].payload["attempt"] == 2
    assert 1.0 <= retry[0].payload["backoff_s"] <= 1.25
    attempts = [
        (m["step"], m["attempt"]) for m in sim.step_messages if m["step"] == "model_training"
    ]
    assert attempts == [("model_training", 1), ("model_training", 2)]


def _compensations(sim: Sim, rid: UUID) -> list[str]:
    return [
        e.payload["step"]
        for e in sim.h.store.load(rid)
        if e.type == "StepSucceeded" and e.payload["kind"] == "compensate"
    ]


def test_a_permanent_failure_compensates_the_completed_steps_newest_first() -> None:
    sim = Sim(script={("model_validation", "run"): [fail("gate accuracy: 0.41 < 0.95", True)]})
    rid = sim.start()
    stream = sim.pump(rid)
    assert stream[-1] == "TrainingFailed"
    assert "StepRetryScheduled" not in stream  # permanent: not retried
    assert _compensations(sim, rid) == ["model_training", "data_preparation"]
    end = sim.h.store.load(rid)[-1].payload
    assert end["cause"] == "failed" and end["failed_step"] == "model_validation"
    assert "0.41" in end["error"] and end["compensated"] == ["model_training", "data_preparation"]


def test_a_registration_the_registry_rejects_compensates_training_and_preparation() -> None:
    sim = Sim(
        script={
            ("model_registration", "run"): [
                fail("rejected by the registry: dataset_checksum_mismatch", True)
            ]
        }
    )
    rid = sim.start()
    stream = sim.pump(rid)
    assert stream[-1] == "TrainingFailed"
    assert _compensations(sim, rid) == ["model_training", "data_preparation"]


def test_a_step_that_never_answers_times_out_each_attempt_then_compensates() -> None:
    sim = Sim(script={("model_training", "run"): [lambda _: None]})
    rid = sim.start()
    stream = sim.pump(rid)
    assert stream.count("StepTimedOut") == 3  # max_attempts
    assert stream[-1] == "TrainingFailed"
    end = sim.h.store.load(rid)[-1].payload
    assert end["cause"] == "timed_out" and end["failed_step"] == "model_training"
    assert _compensations(sim, rid) == ["data_preparation"]


def test_cancel_mid_run_waits_for_the_step_in_flight_then_compensates_it_too() -> None:
    sim = Sim()
    rid = sim.start()

    def cancel_then_succeed(p: dict[str, Any]) -> dict[str, Any]:
        assert (
            sim.h.ok("alice", "CancelTraining", {"run_id": str(rid), "reason": "wrong data"}).status
            == "accepted"
        )
        return {"outcome": "succeeded", "result": RESULTS["model_training"]}

    sim.script[("model_training", "run")] = [cancel_then_succeed]
    stream = sim.pump(rid)
    assert stream[-1] == "TrainingCancelled"
    assert "model_validation" not in [m["step"] for m in sim.step_messages]
    assert _compensations(sim, rid) == ["model_training", "data_preparation"]
    assert sim.h.store.load(rid)[-1].payload == {
        "reason": "wrong data",
        "compensated": ["model_training", "data_preparation"],
    }


def test_a_redelivered_event_sends_the_same_commands_and_changes_nothing() -> None:
    sim = Sim()
    rid = sim.start()
    sim.pump(rid)
    before = [e.event_id for e in sim.h.store.load(rid)]
    sim.seen = 0  # the orchestrator crashed and reads everything again
    sim.pump(rid)
    assert [e.event_id for e in sim.h.store.load(rid)] == before
    assert len(set(sim.sent_ids)) < len(sim.sent_ids)  # repeats carried the same command ids


def test_stale_results_and_out_of_order_commands_are_refused() -> None:
    sim = Sim(script={("model_training", "run"): [lambda _: None]})
    rid = sim.start()
    sim.pump(rid, until=lambda r: r.open is not None and r.open.step == "model_training")
    late = {
        "run_id": str(rid),
        "step": "data_preparation",
        "attempt": 1,
        "kind": "run",
        "outcome": "succeeded",
    }
    res = sim.h.send("svc", "RecordStepResult", late)
    assert res.status == "rejected" and res.sub_code == "stale_attempt"
    skip = {"run_id": str(rid), "step": "model_registration", "attempt": 1, "kind": "run"}
    assert sim.h.send("svc", "DispatchStep", skip).sub_code == "attempt_in_flight"
    forged = sim.h.send("alice", "RecordStepResult", late)
    assert forged.reason_code == "forbidden"  # only the service role reports steps


def test_fault_injection_is_refused_unless_switched_on() -> None:
    sim = Sim()
    sim.h.register_model("fraud")
    res = sim.h.send(
        "alice",
        "StartTraining",
        {"model_name": "fraud", "dataset_uri": "sklearn:iris", "faults": {"noop": True}},
    )
    assert res.status == "rejected" and res.sub_code == "faults_disabled"
    unknown = sim.h.send(
        "alice", "StartTraining", {"model_name": "nope", "dataset_uri": "sklearn:iris"}
    )
    assert unknown.reason_code == "not_found"
    bad = sim.h.send("alice", "StartTraining", {"model_name": "fraud", "dataset_uri": "http://x"})
    assert bad.reason_code == "schema_violation" and "dataset_uri" in (bad.message or "")


def test_run_ids_come_from_the_command_and_timers_from_the_state() -> None:
    sim = Sim(script={("data_preparation", "run"): [lambda _: None]})
    rid = sim.start()
    sim.pump(rid, until=lambda r: r.open is not None)
    run = sim.run(rid)
    (deadline,) = timers(run)
    assert deadline.key == "deadline:data_preparation:run:1"
    assert deadline.at == datetime.fromisoformat(run.open.deadline_at)  # type: ignore[union-attr]
    assert on_timer(run, "deadline:model_training:run:1") == []  # stale: does nothing

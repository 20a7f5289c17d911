"""The training saga as a process manager for the faust runtime (workers.sagas): its state is the
TrainingRun aggregate folded from the store, its policy is sagas.training's, and its timers are
the attempt deadlines and retry due times that the run's own events hold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from domain.training import TrainingRun
from events.catalog import EVENT_TYPES
from events.envelope import EventEnvelope
from infra.context import Infra
from sagas import training
from sagas.model import OutgoingCommand, PolicyInput, ProcessManager, Timer, TimerFired

STEP_COMMAND = "RunStep"  # the envelope type of a step command on training.steps


def load_state(events: Sequence[EventEnvelope]) -> TrainingRun:
    return TrainingRun.rehydrate(events[0].aggregate_id, list(events))


def _outgoing(out: training.Outgoing) -> OutgoingCommand:
    if isinstance(out, training.StepMessage):
        return OutgoingCommand(STEP_COMMAND, out.payload, out.key, topic=training.STEPS_TOPIC)
    return OutgoingCommand(out.type, out.payload, out.key)


def policy(run: TrainingRun, what: PolicyInput) -> list[OutgoingCommand]:
    if isinstance(what, TimerFired):
        outs = training.on_timer(run, what.key)
    else:
        outs = training.policy(run, EVENT_TYPES[what.type].model_validate(what.payload))
    return [_outgoing(o) for o in outs]


def timers(run: TrainingRun) -> Iterable[Timer]:
    return [Timer(t.at, t.key) for t in training.timers(run)]


def open_runs(infra: Infra) -> Iterable[UUID]:
    """Runs that may hold timers: not ended in the read model (a run it has not seen yet gets its
    timers from its own events as they arrive)."""
    with infra.read_model_connection() as conn:
        rows = conn.execute(
            "SELECT run_id FROM rm_training_runs WHERE status IN ('running', 'compensating')"
        ).fetchall()
    return [UUID(str(r[0])) for r in rows]


TRAINING_SAGA: ProcessManager[TrainingRun] = ProcessManager(
    name="training",
    topics=("training.events",),
    load_state=load_state,
    policy=policy,
    aggregate_types=frozenset({"TrainingRun"}),
    timers=timers,
    open_aggregates=open_runs,
    roles=("service",),
    metrics_slot=0,
)

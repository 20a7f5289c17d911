"""A tiny process manager, used only by the runtime's tests (tests/integration/test_saga_runtime.py).

Its aggregate, an `example_job`, lives in the training context: its events are appended straight
to the event store (there is no command for it) and reach `training.events` through the real
relay. The policy answers each JobRequested with a RegisterModel command, which goes the real
command path (JWT, RBAC, results table), and a job's optional reminder is a timer: its due time is
a fact in JobRequested, and when it fires the policy sends UpdateModelMetadata. JobClosed closes
it. A model name starting with "poison-" makes the policy raise (the fatal-exit test).

Run it as `python -m tests.integration.example_saga` (EXAMPLE_SAGA_NAME names its group).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

import psycopg

from domain.registry import model_id
from events.envelope import GENESIS_HASH, EventEnvelope, seal
from infra.postgres.eventstore import EVENTS_TABLE, EventStore
from sagas.model import OutgoingCommand, PolicyInput, ProcessManager, Timer, TimerFired
from veritas.bootstrap import Container
from workers.sagas.runtime import run

AGGREGATE_TYPE = "example_job"
CONTEXT = "training"
REMIND = "remind"


@dataclass(frozen=True)
class Job:
    model_name: str = ""
    remind_at: datetime | None = None
    closed: bool = False


def load_state(events: Sequence[EventEnvelope]) -> Job:
    job = Job()
    for e in events:
        if e.type == "JobRequested":
            at = e.payload.get("remind_at")
            job = Job(e.payload["model_name"], datetime.fromisoformat(at) if at else None)
        elif e.type == "JobClosed":
            job = Job(job.model_name, job.remind_at, closed=True)
    return job


def policy(job: Job, what: PolicyInput) -> list[OutgoingCommand]:
    key = str(model_id(job.model_name))
    if isinstance(what, TimerFired):
        payload = {"name": job.model_name, "description": f"reminded for {what.due_at.isoformat()}"}
        return [OutgoingCommand("UpdateModelMetadata", payload, key)]
    if what.type != "JobRequested":
        return []
    if job.model_name.startswith("poison-"):
        raise RuntimeError(f"the example policy refuses {job.model_name}")
    payload = {
        "name": job.model_name,
        "description": f"registered by the example saga for job {what.aggregate_id}",
        "intended_use": "tests",
        "limitations": "none",
    }
    return [OutgoingCommand("RegisterModel", payload, key)]


def timers(job: Job) -> list[Timer]:
    return [Timer(job.remind_at, REMIND)] if job.remind_at and not job.closed else []


def open_aggregates(container: Container) -> Iterable[UUID]:
    s = container.settings
    with psycopg.connect(s.dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT DISTINCT originator_id FROM {s.db_schema}.{EVENTS_TABLE}"
            " WHERE topic = 'training.events'"
            " AND convert_from(state, 'UTF8')::jsonb->>'aggregate_type' = %s",
            (AGGREGATE_TYPE,),
        ).fetchall()
    return [UUID(str(r[0])) for r in rows]


PM: ProcessManager[Job] = ProcessManager(
    name=os.environ.get("EXAMPLE_SAGA_NAME", "example"),
    topics=("training.events",),
    load_state=load_state,
    policy=policy,
    aggregate_types=frozenset({AGGREGATE_TYPE}),
    timers=timers,
    open_aggregates=open_aggregates,
    roles=("ml_engineer",),
)


# Writing the aggregate's events (the tests' stand-in for a command handler) ---------------------


def job_event(
    job_id: UUID, version: int, prev_hash: str, etype: str, payload: dict[str, object]
) -> EventEnvelope:
    now = datetime.now(UTC)
    return seal(
        {
            "event_id": uuid4(),
            "type": etype,
            "schema_version": 1,
            "aggregate_type": AGGREGATE_TYPE,
            "aggregate_id": job_id,
            "version": version,
            "occurred_at": now,
            "actor": "tests",
            "correlation_id": f"job-{job_id}",
            "causation_id": f"job-{job_id}",
            "payload": payload,
            "prev_hash": prev_hash,
        }
    )


def request_jobs(
    store: EventStore, names: Sequence[str], remind_at: datetime | None = None
) -> list[EventEnvelope]:
    """One JobRequested each, committed together (the relay publishes them in one transaction)."""
    extra = {"remind_at": remind_at.isoformat()} if remind_at else {}
    envs = [
        job_event(uuid4(), 1, GENESIS_HASH, "JobRequested", {"model_name": n, **extra})
        for n in names
    ]
    store.commit([(CONTEXT, e) for e in envs], [])
    return envs


def close_job(store: EventStore, job_id: UUID) -> EventEnvelope:
    last = store.load(job_id)[-1]
    env = job_event(job_id, last.version + 1, last.hash, "JobClosed", {})
    store.commit([(CONTEXT, env)], [])
    return env


if __name__ == "__main__":
    run(PM)

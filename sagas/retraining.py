"""The retraining saga: the closed loop from a RetrainingTriggered (the Monitor's policy decided
on a critical drift or an accuracy drop, once per cooldown) to StartTraining with the production
version's configuration and `trigger: {drift_event_id, report, ...}`, which the new version's
lineage keeps (steps/register.py: lineage.training_config.trigger). Pure: the runtime derives the
command's id from the triggering event, so a redelivery starts no second run."""

from __future__ import annotations

from collections.abc import Sequence

from events.envelope import EventEnvelope
from sagas.model import OutgoingCommand, PolicyInput, ProcessManager


def load_state(events: Sequence[EventEnvelope]) -> None:
    return None


def report_url(model: str, drift_event_id: str | None) -> str | None:
    return f"/monitoring/drift/{drift_event_id}/report.html" if drift_event_id else None


def policy(_: None, what: PolicyInput) -> list[OutgoingCommand]:
    if not isinstance(what, EventEnvelope) or what.type != "RetrainingTriggered":
        return []
    p = what.payload
    t = p["training"]
    trigger = {
        "reason": p["reason"],
        "retraining_event_id": str(what.event_id),
        "drift_event_id": p["drift_event_id"],
        "accuracy_event_id": p["accuracy_event_id"],
        "report": {
            "sha256": p["report_sha256"],
            "url": report_url(p["model_name"], p["drift_event_id"]),
        },
        "monitored_version": p["version"],
        "from_version": t.get("from_version"),
    }
    payload = {
        "model_name": p["model_name"],
        "dataset_uri": t["dataset_uri"],
        "hyperparameters": t.get("hyperparameters") or {},
        "trigger": trigger,
    }
    return [OutgoingCommand("StartTraining", payload, p["model_name"])]


RETRAINING_SAGA: ProcessManager[None] = ProcessManager(
    name="retraining",
    topics=("monitoring.events",),
    load_state=load_state,
    policy=policy,
    aggregate_types=frozenset({"Monitor"}),
    roles=("service",),
    metrics_slot=2,
)

"""Projection of serving events into rm_deployments (one row per model: what its replicas serve,
the rollout's version, share, status, thresholds, last measurement and decision) and
rm_deployment_history (every serving event of the model, in order)."""

from __future__ import annotations

from typing import Any

from projections.ops import Event, Insert, Op, Projection, Update

DEPLOYMENTS, HISTORY = "rm_deployments", "rm_deployment_history"
_THRESHOLDS = ("min_canary_requests", "max_error_rate_increase", "max_p95_ratio", "p95_slack_ms")


def _row(model: str, e: Event) -> dict[str, Any]:
    return {
        "model_name": model,
        "aggregate_id": e.aggregate_id,
        "status": "idle",
        "production_version": None,
        "canary_version": None,
        "rollout_version": None,
        "from_version": None,
        "canary_share": 0.0,
        "thresholds": {},
        "faults": None,
        "measured": None,
        "decision": None,
        "last_refusal": None,
        "started_at": None,
        "updated_at": e.occurred_at,
    }


def _ops(e: Event, **changes: Any) -> list[Op]:
    model = e.payload["model_name"]
    ops: list[Op] = [Insert(DEPLOYMENTS, _row(model, e))] if e.version == 1 else []
    ops.append(
        Update(DEPLOYMENTS, "model_name", model, set={**changes, "updated_at": e.occurred_at})
    )
    detail = {k: v for k, v in e.payload.items() if k != "model_name"}
    ops.append(
        Insert(
            HISTORY,
            {
                "history_key": f"{e.aggregate_id}/{e.version}",
                "model_name": model,
                "seq": e.version,
                "event_type": e.type,
                "version": e.payload.get("version"),
                "detail": detail,
                "actor": e.actor,
                "occurred_at": e.occurred_at,
            },
        )
    )
    return ops


def started(e: Event) -> list[Op]:
    p = e.payload
    return _ops(
        e,
        status="canary",
        rollout_version=p["version"],
        from_version=p["from_version"],
        canary_share=p["canary_share"],
        thresholds={k: p[k] for k in _THRESHOLDS},
        faults=p["faults"],
        measured=None,
        decision=None,
        started_at=e.occurred_at,
    )


def measured(e: Event) -> list[Op]:
    p = e.payload
    return _ops(e, measured={"canary": p["canary"], "stable": p["stable"]})


def promoted(e: Event) -> list[Op]:
    return _ops(e, status="promoted", decision=e.payload["decision"], canary_share=0.0)


def rolled_back(e: Event) -> list[Op]:
    p = e.payload
    return _ops(
        e, status="rolled_back", decision={**p["decision"], "reason": p["reason"]}, canary_share=0.0
    )


def aborted(e: Event) -> list[Op]:
    return _ops(e, status="aborted", decision={"reason": e.payload["reason"]}, canary_share=0.0)


def refused(e: Event) -> list[Op]:
    p = e.payload
    return _ops(
        e, last_refusal={k: p[k] for k in ("version", "slot", "reason", "detail", "still_serving")}
    )


def served(e: Event) -> list[Op]:
    p = e.payload
    return _ops(e, **{f"{p['slot']}_version": p["version"]})


def history_only(e: Event) -> list[Op]:
    return _ops(e)


PROJECTIONS: dict[str, Projection] = {
    "DeploymentStarted": started,
    "CanaryStarted": history_only,
    "CanaryMeasured": measured,
    "CanaryPromoted": promoted,
    "CanaryRolledBack": rolled_back,
    "PromotionRefused": history_only,
    "DeploymentAborted": aborted,
    "LoadRefused": refused,
    "ServedVersionChanged": served,
}

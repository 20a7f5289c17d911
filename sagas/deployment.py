"""The deployment saga (seed 004: staging -> canary -> production) as a pure process manager.

StartDeployment opens a rollout (DeploymentStarted + CanaryStarted: the serving controller puts
the version in the canary slot, a stable share of requests by sha256(request_id)). The controller
counts canary and stable results and, after `min_canary_requests` canary results, records a
CanaryMeasured. On it this policy compares the two versions:

* error rate: canary - stable must not exceed `max_error_rate_increase`;
* p95 latency: canary p95 must not exceed `max_p95_ratio` x stable p95 + `p95_slack_ms` (the
  slack keeps two equally fast versions a few milliseconds apart from counting as a regression).

Both within: PromoteCanary (whose handler still refuses a version without governance's two
approvals, and says so in PromotionRefused). Either regressed: RollBackCanary naming it. Both carry
the measured numbers and the comparison. A canary the replicas refused to load ends the rollout
(AbortDeployment). Pure: the runtime derives the command ids from the triggering event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from events.envelope import EventEnvelope
from sagas.model import OutgoingCommand, PolicyInput, ProcessManager


@dataclass
class Rollout:
    model_name: str = ""
    version: str | None = None
    status: str = "idle"
    thresholds: dict[str, float] = field(default_factory=dict)
    min_requests: int = 0


def load_state(events: Sequence[EventEnvelope]) -> Rollout:
    state = Rollout()
    for env in events:
        p = env.payload
        if env.type == "DeploymentStarted":
            state = Rollout(
                p["model_name"],
                p["version"],
                "canary",
                {
                    k: float(p[k])
                    for k in ("max_error_rate_increase", "max_p95_ratio", "p95_slack_ms")
                },
                int(p["min_canary_requests"]),
            )
        elif env.type in ("CanaryPromoted", "CanaryRolledBack", "DeploymentAborted"):
            state.status = "ended"
    return state


def compare(rollout: Rollout, canary: dict[str, Any], stable: dict[str, Any]) -> dict[str, Any]:
    """The comparison: each check's numbers and whether it regressed."""
    t = rollout.thresholds
    err_delta = float(canary["error_rate"]) - float(stable["error_rate"])
    c95, s95 = canary.get("p95_ms"), stable.get("p95_ms")
    limit = None if s95 is None else float(s95) * t["max_p95_ratio"] + t["p95_slack_ms"]
    # A canary with no successful answer has no p95: its error rate decides.
    p95_bad = c95 is not None and limit is not None and float(c95) > limit
    return {
        "error_rate": {
            "canary": canary["error_rate"],
            "stable": stable["error_rate"],
            "increase": round(err_delta, 6),
            "max_increase": t["max_error_rate_increase"],
            "regressed": err_delta > t["max_error_rate_increase"],
        },
        "p95_latency": {
            "canary_ms": c95,
            "stable_ms": s95,
            "limit_ms": None if limit is None else round(limit, 3),
            "max_ratio": t["max_p95_ratio"],
            "slack_ms": t["p95_slack_ms"],
            "regressed": p95_bad,
        },
    }


def decide(rollout: Rollout, measured: dict[str, Any]) -> OutgoingCommand | None:
    canary, stable = measured["canary"], measured["stable"]
    if rollout.status != "canary" or int(canary["requests"]) < rollout.min_requests:
        return None
    comparison = compare(rollout, canary, stable)
    regressed = [k for k in ("error_rate", "p95_latency") if comparison[k]["regressed"]]
    payload: dict[str, Any] = {
        "model_name": rollout.model_name,
        "version": rollout.version,
        "measured": {
            "canary": canary,
            "stable": stable,
            "stable_version": measured["stable_version"],
        },
        "decision": {**comparison, "outcome": "roll_back" if regressed else "promote"},
    }
    if regressed:
        return OutgoingCommand(
            "RollBackCanary", {**payload, "reason": regressed[0]}, rollout.model_name
        )
    return OutgoingCommand("PromoteCanary", payload, rollout.model_name)


def policy(rollout: Rollout, what: PolicyInput) -> list[OutgoingCommand]:
    if not isinstance(what, EventEnvelope) or rollout.status != "canary":
        return []
    p = what.payload
    if what.type == "CanaryMeasured" and p["version"] == rollout.version:
        cmd = decide(rollout, p)
        return [cmd] if cmd is not None else []
    if what.type == "LoadRefused" and p["slot"] == "canary" and p["version"] == rollout.version:
        reason = f"load_refused:{p['reason']}"
        return [
            OutgoingCommand(
                "AbortDeployment",
                {"model_name": rollout.model_name, "reason": reason},
                rollout.model_name,
            )
        ]
    return []


DEPLOYMENT_SAGA: ProcessManager[Rollout] = ProcessManager(
    name="deployment",
    topics=("serving.events",),
    load_state=load_state,
    policy=policy,
    aggregate_types=frozenset({"Deployment"}),
    roles=("service",),
    metrics_slot=3,
)

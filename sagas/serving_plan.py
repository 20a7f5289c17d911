"""What should be served, folded from events alone (pure: no I/O). The serving controller feeds
it every event of registry.events and serving.events from the start of the log, then each new
one, and deploys `Plan.targets()` whenever it changes:

* production per model: the registry's ProductionVersionChanged / ProductionRolledBack;
* the canary: serving's CanaryStarted until CanaryPromoted, CanaryRolledBack or DeploymentAborted;
* each version's artifact (sha256, signature, key id, manifest digest) from ModelVersionRegistered
  and the stages it is approved for from VersionApproved.

`CanaryCount` counts the results of an open canary and its stable version (inference.results)
until the rollout's `min_canary_requests`, for RecordCanaryMeasurement."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from events.envelope import EventEnvelope


@dataclass
class VersionInfo:
    model_name: str
    version: str
    artifact: dict[str, Any]
    approved_for: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Target:
    """One slot's version and the stage it serves for (the loading rule checks approval for it)."""

    info: VersionInfo
    stage: str


@dataclass
class Rollout:
    version: str
    stable: str
    share: float
    min_requests: int
    faults: dict[str, Any] | None
    started_event: str = ""  # DeploymentStarted's event id: the rollout's identity


@dataclass
class Plan:
    models: dict[str, str] = field(default_factory=dict)  # RegisteredModel aggregate id -> name
    versions: dict[str, VersionInfo] = field(default_factory=dict)  # by ModelVersion id
    production: dict[str, str] = field(default_factory=dict)
    rollouts: dict[str, Rollout] = field(default_factory=dict)  # open canaries by model
    # Versions a replica refused to load, and the production version last put into service: a
    # refused production version is not asked for again, so a new replica (a restart, a scale
    # out) loads what the others kept serving instead of starting with nothing.
    refused: set[tuple[str, str]] = field(default_factory=set)
    served: dict[str, str] = field(default_factory=dict)

    def apply(self, env: EventEnvelope) -> None:
        p, agg = env.payload, str(env.aggregate_id)
        match env.type:
            case "ModelRegistered":
                self.models[agg] = p["name"]
            case "ModelVersionRegistered":
                self.versions[agg] = VersionInfo(p["model_name"], p["version"], dict(p["artifact"]))
            case "VersionApproved" if agg in self.versions:
                self.versions[agg].approved_for.add(p["target_stage"])
            case "ProductionVersionChanged" if agg in self.models:
                self.production[self.models[agg]] = p["version"]
            case "ProductionRolledBack" if agg in self.models:
                self.production[self.models[agg]] = p["to_version"]
            case "DeploymentStarted":
                self.rollouts[p["model_name"]] = Rollout(
                    p["version"],
                    p["from_version"],
                    float(p["canary_share"]),
                    int(p["min_canary_requests"]),
                    p.get("faults"),
                    str(env.event_id),
                )
            case "CanaryPromoted" | "CanaryRolledBack" | "DeploymentAborted":
                self.rollouts.pop(p["model_name"], None)
            case "LoadRefused":
                self.refused.add((p["model_name"], p["version"]))
            case "ServedVersionChanged" if p["slot"] == "production" and p["version"]:
                self.served[p["model_name"]] = p["version"]

    def version(self, model: str, version: str) -> VersionInfo | None:
        for v in self.versions.values():
            if v.model_name == model and v.version == version:
                return v
        return None

    def targets(self) -> dict[str, dict[str, Any]]:
        """Per model: production and canary Targets (or None), the share and the canary's faults."""
        out: dict[str, dict[str, Any]] = {}
        for model in sorted(set(self.production) | set(self.rollouts)):
            prod = self.production.get(model)
            if prod is not None and (model, prod) in self.refused:
                prod = self.served.get(model)
            info = self.version(model, prod) if prod else None
            entry: dict[str, Any] = {
                "production": Target(info, "production") if info else None,
                "canary": None,
                "canary_share": 0.0,
                "canary_faults": None,
            }
            r = self.rollouts.get(model)
            canary = (
                self.version(model, r.version)
                if r and (model, r.version) not in self.refused
                else None
            )
            if r is not None and canary is not None:
                stage = "production" if "production" in canary.approved_for else "staging"
                entry.update(
                    canary=Target(canary, stage), canary_share=r.share, canary_faults=r.faults
                )
            out[model] = entry
        return out


@dataclass
class Side:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def sample(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "p95_ms": p95(self.latencies)}


def p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)], 3)


@dataclass
class CanaryCount:
    model_name: str
    rollout: Rollout
    canary: Side = field(default_factory=Side)
    stable: Side = field(default_factory=Side)
    sent: bool = False

    def add(self, result: dict[str, Any]) -> None:
        version = result.get("model_version")
        side = {self.rollout.version: self.canary, self.rollout.stable: self.stable}.get(
            str(version)
        )
        if side is None:
            return
        side.requests += 1
        if result.get("reason_code") is not None:
            side.errors += 1
        elif isinstance(result.get("latency_ms"), int | float):
            side.latencies.append(float(result["latency_ms"]))

    def measurement(self) -> dict[str, Any] | None:
        """RecordCanaryMeasurement's payload, once, when the canary has enough results."""
        if self.sent or self.canary.requests < self.rollout.min_requests:
            return None
        self.sent = True
        return {
            "model_name": self.model_name,
            "version": self.rollout.version,
            "stable_version": self.rollout.stable,
            "canary": self.canary.sample(),
            "stable": self.stable.sample(),
        }

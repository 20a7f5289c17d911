"""Serving aggregates: a Deployment per model (its rollouts: canary, then production or a
rollback; and what its replicas serve or refused) and the one ServingFleet (its scale changes).

Invariants: one rollout at a time per model; a rollout needs a stable production version to be
compared with; a measurement, promotion or rollback names the rollout's version; and production
needs governance's approval for production (two distinct approvers, governance's rule): without
it a promotion is refused, recorded as PromotionRefused and the canary rolled back."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.base import Aggregate, Meta, aggregate_id
from domain.errors import InvariantViolation
from events.base import DomainEvent
from events.envelope import EventEnvelope
from events.serving import (
    CanaryMeasured,
    CanaryPromoted,
    CanaryRolledBack,
    CanaryStarted,
    DeploymentAborted,
    DeploymentStarted,
    LoadRefused,
    PromotionRefused,
    ScaledOut,
    ServedVersionChanged,
)

ACTIVE = "canary"  # the only status in which a rollout is open


def deployment_id(model_name: str) -> UUID:
    return aggregate_id("deployment", model_name)


def fleet_id() -> UUID:
    return aggregate_id("serving-fleet", "default")


class Deployment(Aggregate):
    aggregate_type = "Deployment"
    context = "serving"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.model_name = ""
        self.status = "idle"  # idle | canary | promoted | rolled_back | aborted
        self.rollout: str | None = None  # the rollout's version
        self.from_version: str | None = None
        self.share = 0.0
        self.serving: dict[str, str | None] = {"production": None, "canary": None}

    # -- invariants -------------------------------------------------------------------------------

    def check_can_start(self, version: str, production: str | None) -> None:
        if self.status == ACTIVE:
            raise InvariantViolation(
                f"version {self.rollout} of '{self.model_name}' is still in canary; "
                "promote or abort it first",
                "deployment_in_progress",
            )
        if production is None:
            raise InvariantViolation(
                "a canary needs a production version to be compared with", "no_production"
            )
        if production == version:
            raise InvariantViolation(
                f"version {version} is already in production", "already_in_stage"
            )

    def check_rollout(self, version: str) -> None:
        if self.status != ACTIVE or self.rollout != version:
            raise InvariantViolation(
                f"no canary of version {version} is open for '{self.model_name or '?'}' "
                f"(status {self.status}, version {self.rollout})",
                "no_open_canary",
            )

    # -- commands ---------------------------------------------------------------------------------

    def start(self, fields: dict[str, Any], meta: Meta) -> None:
        self.record(DeploymentStarted(**fields), meta)
        self.record(
            CanaryStarted(
                model_name=fields["model_name"],
                version=fields["version"],
                share=fields["canary_share"],
            ),
            meta,
        )

    def measure(self, fields: dict[str, Any], meta: Meta) -> None:
        self.check_rollout(fields["version"])
        self.record(CanaryMeasured(**fields), meta)

    def promote(self, measured: dict[str, Any], decision: dict[str, Any], meta: Meta) -> None:
        assert self.rollout is not None and self.from_version is not None
        self.record(
            CanaryPromoted(
                model_name=self.model_name,
                version=self.rollout,
                previous_version=self.from_version,
                measured=measured,
                decision=decision,
            ),
            meta,
        )

    def refuse_promotion(self, detail: str, measured: dict[str, Any], meta: Meta) -> None:
        assert self.rollout is not None
        self.record(
            PromotionRefused(
                model_name=self.model_name,
                version=self.rollout,
                reason_code="approval_required",
                detail=detail,
            ),
            meta,
        )
        self.roll_back("approval_required", measured, {"decided_by": "governance"}, meta)

    def roll_back(
        self, reason: str, measured: dict[str, Any], decision: dict[str, Any], meta: Meta
    ) -> None:
        assert self.rollout is not None
        self.record(
            CanaryRolledBack(
                model_name=self.model_name,
                version=self.rollout,
                reason=reason,
                measured=measured,
                decision=decision,
            ),
            meta,
        )

    def abort(self, reason: str, meta: Meta) -> None:
        if self.status != ACTIVE or self.rollout is None:
            raise InvariantViolation(
                f"'{self.model_name}' has no open rollout to abort", "no_open_canary"
            )
        self.record(
            DeploymentAborted(model_name=self.model_name, version=self.rollout, reason=reason), meta
        )

    def load_refused(self, fields: dict[str, Any], meta: Meta) -> None:
        self.record(LoadRefused(**fields), meta)

    def served(self, fields: dict[str, Any], meta: Meta) -> None:
        if self.serving.get(fields["slot"]) == fields["version"]:
            return  # another replica's report of the same change
        self.record(ServedVersionChanged(**fields), meta)

    # -- state ------------------------------------------------------------------------------------

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        match event:
            case DeploymentStarted():
                self.model_name, self.status = event.model_name, ACTIVE
                self.rollout, self.from_version = event.version, event.from_version
                self.share = event.canary_share
            case CanaryPromoted():
                self.status = "promoted"
            case CanaryRolledBack():
                self.status = "rolled_back"
            case DeploymentAborted():
                self.status = "aborted"
            case LoadRefused() | ServedVersionChanged():
                self.model_name = event.model_name
                if isinstance(event, ServedVersionChanged):
                    self.serving[event.slot] = event.version


class ServingFleet(Aggregate):
    aggregate_type = "ServingFleet"
    context = "serving"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.replicas = 0

    def check_scale_out(self, from_replicas: int, to_replicas: int, max_replicas: int) -> None:
        if not from_replicas < to_replicas <= max_replicas:
            raise InvariantViolation(
                f"scale out from {from_replicas} to {to_replicas} is outside the bound {max_replicas}",
                "out_of_bounds",
            )

    def scale_out(self, fields: dict[str, Any], meta: Meta) -> None:
        self.check_scale_out(fields["from_replicas"], fields["to_replicas"], fields["max_replicas"])
        self.record(ScaledOut(**fields), meta)

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        if isinstance(event, ScaledOut):
            self.replicas = event.to_replicas

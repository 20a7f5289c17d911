"""Serving commands (topic serving.commands): StartDeployment, PromoteCanary, RollBackCanary and
AbortDeployment from operators (the deployment saga sends the last three too), and the serving
controller's RecordLoadRefused, RecordServedVersion, RecordCanaryMeasurement and RecordScaleOut,
which only the `service` role may send."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from commands.base import STRICT, Command, FreeDict, Name, SemVer, ShortText

Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Slot = Literal["production", "canary"]
LoadReason = Literal["sha256_mismatch", "bad_signature", "not_approved", "unreadable"]


class CanaryFaults(BaseModel):
    """Faults injected into the canary (settings.serving_fault_injection; tests only)."""

    model_config = STRICT
    delay_ms: float = Field(0.0, ge=0.0, le=10_000.0, allow_inf_nan=False)
    error: bool = False


class Sample(BaseModel):
    """Results counted for one version while the canary served."""

    model_config = STRICT
    requests: int = Field(ge=0, le=10**12)
    errors: int = Field(ge=0, le=10**12)
    p95_ms: float | None = Field(None, ge=0.0, allow_inf_nan=False)


class ServingCommand(Command):
    context = "serving"


class StartDeployment(ServingCommand):
    """Roll `version` out: a canary beside production, then production or a rollback."""

    model_name: Name
    version: SemVer
    canary_share: Unit = 0.05
    min_canary_requests: int = Field(200, ge=1, le=10_000_000)
    max_error_rate_increase: Unit = 0.02  # canary error rate - stable error rate
    max_p95_ratio: float = Field(2.0, ge=1.0, le=1000.0, allow_inf_nan=False)
    p95_slack_ms: float = Field(25.0, ge=0.0, le=60_000.0, allow_inf_nan=False)
    faults: CanaryFaults | None = None


class PromoteCanary(ServingCommand):
    model_name: Name
    version: SemVer
    measured: FreeDict = {}
    decision: FreeDict = {}


class RollBackCanary(ServingCommand):
    model_name: Name
    version: SemVer
    reason: ShortText = "manual"
    measured: FreeDict = {}
    decision: FreeDict = {}


class AbortDeployment(ServingCommand):
    model_name: Name
    reason: ShortText = "manual"


class RecordLoadRefused(ServingCommand):
    model_name: Name
    version: SemVer
    slot: Slot
    reason: LoadReason
    detail: ShortText = ""
    still_serving: SemVer | None = None


class RecordServedVersion(ServingCommand):
    model_name: Name
    slot: Slot
    version: SemVer | None
    previous_version: SemVer | None = None


class RecordCanaryMeasurement(ServingCommand):
    model_name: Name
    version: SemVer
    stable_version: SemVer
    canary: Sample
    stable: Sample


class RecordScaleOut(ServingCommand):
    from_replicas: int = Field(ge=0, le=1000)
    to_replicas: int = Field(ge=1, le=1000)
    lag: int = Field(ge=0, le=10**12)
    threshold: int = Field(ge=0, le=10**12)
    max_replicas: int = Field(ge=1, le=1000)


PUBLIC = (StartDeployment, PromoteCanary, RollBackCanary, AbortDeployment)
INTERNAL = (RecordLoadRefused, RecordServedVersion, RecordCanaryMeasurement, RecordScaleOut)

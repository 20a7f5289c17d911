"""Serving events (topic serving.events): the Deployment aggregate's history, one stream per model,
and the serving fleet's scale changes. What is served follows the registry's own
ProductionVersionChanged / ProductionRolledBack (registry.events) and the canary events here; what
the replicas actually loaded or refused is recorded here from their reports."""

from __future__ import annotations

from typing import Any

from events.base import DomainEvent


class DeploymentStarted(DomainEvent):
    """A rollout of `version` beside the production version `from_version`."""

    model_name: str
    version: str
    from_version: str
    canary_share: float
    min_canary_requests: int
    max_error_rate_increase: float
    max_p95_ratio: float
    p95_slack_ms: float
    faults: dict[str, Any] | None  # injected canary faults (tests only, settings-gated)
    started_by: str


class CanaryStarted(DomainEvent):
    model_name: str
    version: str
    share: float


class CanaryMeasured(DomainEvent):
    """The serving controller's count of canary and stable results since the canary served."""

    model_name: str
    version: str
    stable_version: str
    canary: dict[str, Any]  # {requests, errors, error_rate, p95_ms}
    stable: dict[str, Any]


class CanaryPromoted(DomainEvent):
    """The canary is production now (the registry's ProductionVersionChanged is recorded with it)."""

    model_name: str
    version: str
    previous_version: str
    measured: dict[str, Any]
    decision: dict[str, Any]  # thresholds, the numbers compared, who decided


class CanaryRolledBack(DomainEvent):
    model_name: str
    version: str
    reason: str  # error_rate | p95_latency | approval_required | load_refused:<reason> | manual
    measured: dict[str, Any]
    decision: dict[str, Any]


class PromotionRefused(DomainEvent):
    """Promotion to production without governance's two approvals."""

    model_name: str
    version: str
    reason_code: str  # approval_required
    detail: str


class DeploymentAborted(DomainEvent):
    model_name: str
    version: str
    reason: str


class LoadRefused(DomainEvent):
    """A replica refused to load a version; `still_serving` is what the slot kept."""

    model_name: str
    version: str
    slot: str
    reason: str  # sha256_mismatch | bad_signature | not_approved | unreadable
    detail: str
    still_serving: str | None


class ServedVersionChanged(DomainEvent):
    """The replicas put `version` into `slot` (None: the slot was emptied)."""

    model_name: str
    slot: str  # production | canary
    version: str | None
    previous_version: str | None


class ScaledOut(DomainEvent):
    """Consumer lag on inference.requests passed the threshold: more replicas, within bounds."""

    from_replicas: int
    to_replicas: int
    lag: int
    threshold: int
    max_replicas: int


EVENTS: dict[str, type[DomainEvent]] = {
    cls.__name__: cls
    for cls in (
        DeploymentStarted,
        CanaryStarted,
        CanaryMeasured,
        CanaryPromoted,
        CanaryRolledBack,
        PromotionRefused,
        DeploymentAborted,
        LoadRefused,
        ServedVersionChanged,
        ScaledOut,
    )
}

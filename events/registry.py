"""Registry events (topic registry.events)."""

from __future__ import annotations

from typing import Any

from events.base import DomainEvent


class ModelRegistered(DomainEvent):
    name: str
    description: str
    intended_use: str
    limitations: str
    owner: str
    tags: dict[str, str]


class ModelMetadataUpdated(DomainEvent):
    description: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    tags: dict[str, str] | None = None


class DatasetRegistered(DomainEvent):
    name: str
    version: str
    uri: str
    checksum: str
    description: str
    registered_by: str


class ModelVersionRegistered(DomainEvent):
    model_name: str
    version: str
    artifact: dict[str, str]
    lineage: dict[str, Any]
    metrics: dict[str, float]
    registered_by: str


class VersionApproved(DomainEvent):
    submission_id: str
    target_stage: str
    approvers: list[str]


class StageTransitioned(DomainEvent):
    model_name: str
    version: str
    from_stage: str
    to_stage: str
    reason: str


class ProductionVersionChanged(DomainEvent):
    version: str
    previous_version: str | None


class ProductionRolledBack(DomainEvent):
    from_version: str
    to_version: str
    reason: str


EVENTS: dict[str, type[DomainEvent]] = {
    cls.__name__: cls
    for cls in (
        ModelRegistered,
        ModelMetadataUpdated,
        DatasetRegistered,
        ModelVersionRegistered,
        VersionApproved,
        StageTransitioned,
        ProductionVersionChanged,
        ProductionRolledBack,
    )
}

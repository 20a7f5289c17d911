"""Registry aggregates: RegisteredModel, ModelVersion and Dataset."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.base import Aggregate, Meta, aggregate_id
from domain.errors import AlreadyExists, InvariantViolation, NotFound
from events.base import DomainEvent
from events.envelope import EventEnvelope
from events.registry import (
    DatasetRegistered,
    ModelMetadataUpdated,
    ModelRegistered,
    ModelVersionRegistered,
    ProductionRolledBack,
    ProductionVersionChanged,
    StageTransitioned,
    VersionApproved,
)

# Allowed stage moves through TransitionStage. Archived is terminal except for RollbackProduction.
TRANSITIONS: dict[str, set[str]] = {
    "development": {"staging", "production", "archived"},
    "staging": {"development", "production", "archived"},
    "production": {"archived"},
    "archived": set(),
}


def model_id(name: str) -> UUID:
    return aggregate_id("model", name)


def version_id(model_name: str, version: str) -> UUID:
    return aggregate_id("model-version", model_name, version)


def dataset_id(name: str, version: str) -> UUID:
    return aggregate_id("dataset", name, version)


class RegisteredModel(Aggregate):
    aggregate_type = "RegisteredModel"
    context = "registry"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.owner = ""
        self.tags: dict[str, str] = {}
        self.production_version: str | None = None
        # Versions that held production before the current one, newest last (for rollback).
        self.production_history: list[str] = []

    def check_exists(self, name: str) -> None:
        if not self.exists:
            raise NotFound(f"model '{name}' is not registered")

    def register(self, fields: dict[str, Any], meta: Meta) -> None:
        if self.exists:
            raise AlreadyExists(f"model '{fields['name']}' is already registered")
        self.record(ModelRegistered(**fields), meta)

    def update_metadata(self, changes: dict[str, Any], meta: Meta) -> None:
        self.check_exists(self.name)
        if not any(v is not None for v in changes.values()):
            raise InvariantViolation("UpdateModelMetadata changes nothing", "empty_update")
        self.record(ModelMetadataUpdated(**changes), meta)

    def set_production(self, version: str, meta: Meta) -> None:
        self.record(
            ProductionVersionChanged(version=version, previous_version=self.production_version),
            meta,
        )

    def check_can_roll_back(self) -> tuple[str, str]:
        if self.production_version is None:
            raise InvariantViolation(
                f"model '{self.name}' has no production version", "no_production"
            )
        if not self.production_history:
            raise InvariantViolation(
                f"model '{self.name}' has no earlier production version to restore",
                "no_previous_production",
            )
        return self.production_version, self.production_history[-1]

    def roll_back(self, reason: str, meta: Meta) -> None:
        current, previous = self.check_can_roll_back()
        self.record(
            ProductionRolledBack(from_version=current, to_version=previous, reason=reason), meta
        )

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        match event:
            case ModelRegistered():
                self.name, self.owner, self.tags = event.name, event.owner, dict(event.tags)
            case ModelMetadataUpdated():
                self.tags.update(event.tags or {})  # tags merge: a key is set, others are kept
            case ProductionVersionChanged():
                if event.previous_version:
                    self.production_history.append(event.previous_version)
                self.production_version = event.version
            case ProductionRolledBack():
                self.production_history.pop()
                self.production_version = event.to_version


class ModelVersion(Aggregate):
    aggregate_type = "ModelVersion"
    context = "registry"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.model_name = ""
        self.semver = ""
        self.stage = "development"
        self.approved_for: set[str] = set()
        self.registered: ModelVersionRegistered | None = None  # artifact, lineage, metrics

    def check_exists(self, model_name: str, version: str) -> None:
        if not self.exists:
            raise NotFound(f"version {version} of model '{model_name}' is not registered")

    def register(self, fields: dict[str, Any], meta: Meta) -> None:
        if self.exists:
            raise AlreadyExists(
                f"version {fields['version']} of '{fields['model_name']}' already exists"
            )
        self.record(ModelVersionRegistered(**fields), meta)

    def check_not_archived(self) -> None:
        if self.stage == "archived":
            raise InvariantViolation(
                f"version {self.semver} of '{self.model_name}' is archived and cannot be promoted",
                "archived_version",
            )

    def check_transition(self, to_stage: str) -> None:
        self.check_not_archived()
        if to_stage == self.stage:
            raise InvariantViolation(
                f"version {self.semver} is already in {to_stage}", "already_in_stage"
            )
        if to_stage not in TRANSITIONS[self.stage]:
            raise InvariantViolation(
                f"version {self.semver} cannot move from {self.stage} to {to_stage}",
                "illegal_transition",
            )
        if to_stage == "production" and "production" not in self.approved_for:
            raise InvariantViolation(
                f"version {self.semver} of '{self.model_name}' has no approved submission for production",
                "approval_required",
            )

    def check_submittable(self, target_stage: str) -> None:
        self.check_not_archived()
        if self.stage == target_stage:
            raise InvariantViolation(
                f"version {self.semver} is already in {target_stage}", "already_in_stage"
            )

    def transition(self, to_stage: str, reason: str, meta: Meta) -> None:
        self.record(
            StageTransitioned(
                model_name=self.model_name,
                version=self.semver,
                from_stage=self.stage,
                to_stage=to_stage,
                reason=reason,
            ),
            meta,
        )

    def approve(
        self, submission_id: str, target_stage: str, approvers: list[str], meta: Meta
    ) -> None:
        self.record(
            VersionApproved(
                submission_id=submission_id, target_stage=target_stage, approvers=approvers
            ),
            meta,
        )

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        match event:
            case ModelVersionRegistered():
                self.model_name, self.semver = event.model_name, event.version
                self.registered = event
            case VersionApproved():
                self.approved_for.add(event.target_stage)
            case StageTransitioned():
                self.stage = event.to_stage


class Dataset(Aggregate):
    aggregate_type = "Dataset"
    context = "registry"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.checksum = ""

    def register(self, fields: dict[str, Any], meta: Meta) -> None:
        if self.exists:
            raise AlreadyExists(f"dataset {fields['name']}@{fields['version']} already exists")
        self.record(DatasetRegistered(**fields), meta)

    def check_checksum(self, name: str, version: str, checksum: str) -> None:
        if not self.exists:
            raise NotFound(f"dataset {name}@{version} is not registered")
        if checksum != self.checksum:
            raise InvariantViolation(
                f"dataset {name}@{version} checksum differs from the registered one",
                "dataset_checksum_mismatch",
            )

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        if isinstance(event, DatasetRegistered):
            self.checksum = event.checksum

"""Response and request models of the HTTP API (they document the OpenAPI spec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    detail: str
    reason_code: str | None = Field(
        None, description="Set by the gate's refusals: unauthenticated, forbidden, rate_limited"
    )


class CommandRequest(BaseModel):
    type: str = Field(max_length=64)
    payload: dict[str, Any]
    command_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    schema_version: int | None = Field(None, ge=1)
    correlation_id: str | None = Field(None, max_length=128)


class CommandAccepted(BaseModel):
    command_id: str
    status: str = "submitted"


class CommandStatus(BaseModel):
    command_id: str
    status: str
    reason_code: str | None = None
    sub_code: str | None = None
    message: str | None = None
    events: list[dict[str, Any]] = []


class Model(BaseModel):
    name: str
    description: str
    intended_use: str
    limitations: str
    owner: str
    tags: dict[str, str]
    production_version: str | None
    staging_version: str | None
    version_count: int
    created_at: datetime
    updated_at: datetime


class VersionSummary(BaseModel):
    version: str
    stage: str
    metrics: dict[str, float]
    approvals: list[dict[str, Any]] = []
    created_at: datetime


class ModelDetail(Model):
    versions: list[VersionSummary]
    as_of: datetime | None = Field(None, description="set when the answer is point-in-time")


class ModelPage(BaseModel):
    items: list[Model]
    next_cursor: str | None


class StageChange(BaseModel):
    from_stage: str
    to_stage: str
    reason: str
    actor: str
    occurred_at: datetime


class Version(BaseModel):
    model_name: str
    version: str
    stage: str
    artifact: dict[str, str]
    lineage: dict[str, Any]
    metrics: dict[str, float]
    registered_by: str
    approvals: list[dict[str, Any]]
    stage_history: list[StageChange]
    created_at: datetime
    updated_at: datetime


class Lineage(BaseModel):
    model_name: str
    version: str
    lineage: dict[str, Any]
    ancestors: list[str]


class Dataset(BaseModel):
    name: str
    version: str
    uri: str
    checksum: str
    description: str
    registered_by: str
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[Dataset]
    next_cursor: str | None


class Submission(BaseModel):
    submission_id: str
    model_name: str
    version: str
    target_stage: str
    justification: str
    submitted_by: str
    required_approvals: int
    approvers: list[dict[str, Any]]
    status: str
    decided_by: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime


class SubmissionPage(BaseModel):
    items: list[Submission]
    next_cursor: str | None


class AuditTrail(BaseModel):
    aggregate_type: str
    aggregate_id: str
    events: list[dict[str, Any]]
    chain_valid: bool
    chain_break: dict[str, Any] | None


class Verification(BaseModel):
    source: str
    aggregates: int
    events: int
    undecodable: int = Field(0, description="records on the topics that are not event envelopes")
    valid: bool
    chain_break: dict[str, Any] | None = Field(
        None, description="aggregate_type, aggregate_id, version and reason of the first break"
    )


class StepAttempt(BaseModel):
    step: str
    kind: str
    attempt: int
    status: str
    dispatched_at: datetime
    deadline_at: str
    finished_at: datetime | None
    duration_s: float | None
    result: dict[str, Any] | None
    error: str | None


class TrainingRun(BaseModel):
    run_id: str
    model_name: str
    dataset_uri: str
    status: str = Field(description="running, compensating, completed, failed or cancelled")
    requested_by: str
    hyperparameters: dict[str, Any]
    gates: dict[str, Any]
    trigger: dict[str, Any] | None
    current_step: str | None
    gate_results: list[dict[str, Any]]
    compensations: list[dict[str, Any]]
    progress: list[dict[str, Any]] = Field(description="per-epoch loss and accuracy")
    retries: list[dict[str, Any]]
    cause: str | None
    failed_step: str | None
    error: str | None
    version: str | None
    artifact_sha256: str | None
    submission_id: str | None
    created_at: datetime
    updated_at: datetime


class TrainingRunDetail(TrainingRun):
    steps: list[StepAttempt]


class TrainingRunPage(BaseModel):
    items: list[TrainingRun]
    next_cursor: str | None

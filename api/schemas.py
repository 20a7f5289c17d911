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


class LogProblem(BaseModel):
    aggregate_type: str
    aggregate_id: str
    version: int
    place: str = Field(
        description="store#<notification id>, <topic>/<partition>/<offset>, or"
        " read_model:<topic>/<partition>/<offset>"
    )
    reason: str = Field(
        description="a reason code (bad_hash, unsigned, unknown_key, retired_key, bad_signature,"
        " chain_broken, version_gap, conflicting_version, undecodable), or only_in_store,"
        " only_in_kafka, conflicting, not_in_store"
    )


class AuditTrail(BaseModel):
    aggregate_type: str
    aggregate_id: str
    source: str = Field("store", description="where the events come from: the event store")
    events: list[dict[str, Any]]
    chain_valid: bool = Field(description="hashes, chain and signatures of the store's events")
    chain_break: dict[str, Any] | None
    refused: list[LogProblem] = []
    read_model_matches: bool = True
    read_model_extra: list[LogProblem] = Field(
        [], description="events the read model shows that the store does not hold"
    )


class SourceSummary(BaseModel):
    source: str
    aggregates: int
    events: int
    refused_count: int
    chain_break: dict[str, Any] | None


class Verification(BaseModel):
    source: str
    aggregates: int
    events: int
    undecodable: int = Field(0, description="records on the topics that are not event envelopes")
    valid: bool
    chain_break: dict[str, Any] | None = Field(
        None,
        description="aggregate_type, aggregate_id, version and reason of the first refused event",
    )
    refused: list[LogProblem] = Field([], description="refused events (at most 100 per source)")
    refused_count: int = 0
    only_in_store: list[LogProblem] = []
    only_in_kafka: list[LogProblem] = []
    conflicting: list[LogProblem] = Field(
        [], description="same aggregate and version, different hashes: one entry per side"
    )
    counts: dict[str, int] = Field(
        {}, description="only_in_store, only_in_kafka, conflicting, not_yet_relayed (source=log)"
    )
    relayed_upto: int | None = Field(
        None, description="the relay's position (a notification id) when the check began"
    )
    sources: list[SourceSummary] = []


class PublishedKey(BaseModel):
    key_id: str = Field(description="first 16 hex of sha256 of the 32 raw public key bytes")
    algorithm: str
    public_key_pem: str
    created_at: str
    retired_at: str | None


class PublishedKeys(BaseModel):
    keys: list[PublishedKey]


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

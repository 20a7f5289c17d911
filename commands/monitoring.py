"""Monitoring commands (topic monitoring.commands): SetMonitoringPolicy from people, and the drift
monitor's RecordDriftCheck and RecordAccuracy, which only the `service` role may send."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from commands.base import STRICT, Command, FreeDict, Name, SemVer, Sha256

Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
DEFAULT_WINDOW = 200  # rows per drift window: ml.drift.DEFAULT_WINDOW, measured in bench/


class ColumnTest(BaseModel):
    """An Evidently stattest (and/or its threshold) for one column, or for a kind of column
    (`constant`, `discrete`, `continuous`)."""

    model_config = STRICT
    method: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")] | None = None
    threshold: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)] | None = None


class Policy(BaseModel):
    model_config = STRICT
    enabled: bool = True
    window_size: int = Field(DEFAULT_WINDOW, ge=20, le=100_000)  # rows per window
    # Time windows as well: a window of at least window_min_rows closes after this long.
    window_max_age_s: float | None = Field(None, ge=1.0, le=7 * 86400.0, allow_inf_nan=False)
    window_min_rows: int = Field(50, ge=20, le=100_000)
    warning: Unit = 0.1  # seed 004's drift_score thresholds
    critical: Unit = 0.3
    tests: dict[Annotated[str, Field(max_length=128)], ColumnTest] = Field({}, max_length=500)
    accuracy_window: int = Field(100, ge=10, le=100_000)  # labelled predictions per window
    accuracy_factor: Unit = 0.9  # AccuracyDropped below factor x the validation accuracy
    retrain_on: Literal["never", "critical", "critical_or_accuracy"] = "never"
    cooldown_s: float = Field(3600.0, ge=0.0, le=365 * 86400.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Policy:
        if self.warning > self.critical:
            raise ValueError("warning must not exceed critical")
        return self


DEFAULT_POLICY = Policy()


class MonitoringCommand(Command):
    context = "monitoring"


class SetMonitoringPolicy(MonitoringCommand):
    model_name: Name
    policy: Policy


class RecordDriftCheck(MonitoringCommand):
    """The drift monitor evaluated window `window_id` of a version's served inputs."""

    model_name: Name
    version: SemVer
    window_id: int = Field(ge=1, le=2**62)
    score: Unit
    severity: Literal["warning", "critical"] | None
    per_feature: FreeDict = Field({}, max_length=5000)
    drifted: list[Annotated[str, Field(max_length=128)]] = Field([], max_length=5000)
    bounds: FreeDict = {}
    method: FreeDict = {}
    report_sha256: Sha256 | None = None


class RecordAccuracy(MonitoringCommand):
    """The drift monitor joined window `window_id` of labels to the version's predictions."""

    model_name: Name
    version: SemVer
    window_id: int = Field(ge=1, le=2**62)
    n: int = Field(ge=1, le=10_000_000)
    correct: int = Field(ge=0, le=10_000_000)
    bounds: FreeDict = {}

    @model_validator(mode="after")
    def _counts(self) -> RecordAccuracy:
        if self.correct > self.n:
            raise ValueError("correct must not exceed n")
        return self


PUBLIC = (SetMonitoringPolicy,)
INTERNAL = (RecordDriftCheck, RecordAccuracy)

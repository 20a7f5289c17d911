"""Training commands (topic training.commands): StartTraining and CancelTraining from people, and
the saga's internal step commands, which only the `service` role may send (the orchestrator and
the step workers)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from commands.base import STRICT, Command, FreeDict, LaxUUID, Name, ShortText, Text

SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer")
_DATASET_URI = re.compile(
    r"^(sklearn:(" + "|".join(SKLEARN_DATASETS) + r")"
    r"|file:///[^\x00]{1,1000}\.(csv|parquet)(\?target=[A-Za-z0-9_.-]{1,128})?"
    r"|dataset:[A-Za-z0-9][A-Za-z0-9._-]{0,127}@\d{1,9}\.\d{1,9}\.\d{1,9})$"
)
STEPS = ("data_preparation", "model_training", "model_validation", "model_registration")


def _dataset_uri(value: str) -> str:
    if not _DATASET_URI.match(value):
        raise ValueError(
            "must be sklearn:<digits|iris|wine|breast_cancer>, file:///path.csv|.parquet"
            "[?target=column] or dataset:<name>@<MAJOR.MINOR.PATCH>"
        )
    return value


DatasetUri = Annotated[str, AfterValidator(_dataset_uri)]
Step = Literal["data_preparation", "model_training", "model_validation", "model_registration"]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = STRICT


class Hyperparameters(_Frozen):
    epochs: int = Field(20, ge=1, le=1000)
    learning_rate: float = Field(1e-3, gt=0.0, le=1e9, allow_inf_nan=False)
    batch_size: int = Field(32, ge=1, le=65536)
    hidden_units: int = Field(64, ge=1, le=8192)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class Gates(_Frozen):
    min_accuracy: Unit = 0.0
    accuracy_ratio: Unit = 0.95  # of production's accuracy on the same holdout (seed 004)
    latency_ratio: float = Field(1.10, gt=0, le=100, allow_inf_nan=False)
    memory_ratio: float = Field(1.20, gt=0, le=100, allow_inf_nan=False)
    drift_share: Unit = 0.3  # holdout vs training: at most this share of features drifted


class StepFaults(_Frozen):
    transient_failures: int = Field(0, ge=0, le=10)  # fail this many attempts, transiently
    permanent: ShortText | None = None  # fail permanently with this error
    hang_s: float = Field(0.0, ge=0.0, le=3600.0, allow_inf_nan=False)  # run past the deadline
    nan_loss: bool = False  # model_training: a NaN loss


class Faults(_Frozen):
    """Fault injection, refused unless settings.training_fault_injection is on (tests, benchmarks)."""

    noop: bool = False  # steps do no work (orchestration benchmark)
    steps: dict[Step, StepFaults] = {}


class TrainingCommand(Command):
    context = "training"


class StartTraining(TrainingCommand):
    model_name: Name
    dataset_uri: DatasetUri
    hyperparameters: Hyperparameters = Hyperparameters()
    gates: Gates = Gates()
    trigger: FreeDict | None = None  # e.g. {drift_event_id, report} for drift-started retraining
    declared_major: bool = False
    # Per-step deadlines for this run (seconds); the others come from settings.
    deadlines_s: dict[Step, Annotated[float, Field(ge=1.0, le=86400.0, allow_inf_nan=False)]] = {}
    faults: Faults | None = None


class CancelTraining(TrainingCommand):
    run_id: LaxUUID
    reason: Text


class _StepCommand(TrainingCommand):
    run_id: LaxUUID
    step: Step
    attempt: int = Field(ge=1, le=100)
    kind: Literal["run", "compensate"] = "run"


class DispatchStep(_StepCommand):
    """The orchestrator starts an attempt of a step (or of its compensation)."""

    inputs: FreeDict = {}


class RecordStepResult(_StepCommand):
    """A step worker reports an attempt's outcome."""

    outcome: Literal["succeeded", "failed"]
    result: FreeDict = {}
    error: ShortText = ""
    permanent: bool = False
    duration_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)


class RecordStepTimeout(_StepCommand):
    """The orchestrator's timer: the attempt's deadline passed without a result."""


class ScheduleRetry(_StepCommand):
    backoff_s: float = Field(ge=0.0, le=3600.0, allow_inf_nan=False)


class RecordTrainingProgress(_StepCommand):
    epoch: int = Field(ge=1, le=100000)
    loss: float = Field(ge=0.0, allow_inf_nan=False)
    accuracy: Unit
    holdout_accuracy: Unit | None = None


class BeginCompensation(TrainingCommand):
    run_id: LaxUUID
    cause: Literal["failed", "timed_out", "cancelled"]
    failed_step: Step | None = None
    error: ShortText = ""


class FinishTraining(TrainingCommand):
    run_id: LaxUUID
    outcome: Literal["completed", "failed", "cancelled"]


PUBLIC = (StartTraining, CancelTraining)
INTERNAL = (
    DispatchStep,
    RecordStepResult,
    RecordStepTimeout,
    ScheduleRetry,
    RecordTrainingProgress,
    BeginCompensation,
    FinishTraining,
)


def as_payload(cmd: Command) -> dict[str, Any]:
    return cmd.model_dump(mode="json")

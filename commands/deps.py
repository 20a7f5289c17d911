"""What a command handler is given: the unit of work, who and what caused the command, and the
few settings that shape a decision (passed in: handlers read no configuration themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.base import Meta
from veritas.uow import UnitOfWork

DEFAULT_DEADLINES = {
    "data_preparation": 120.0,
    "model_training": 900.0,
    "model_validation": 300.0,
    "model_registration": 120.0,
}


@dataclass(frozen=True)
class TrainingConfig:
    fault_injection: bool = False  # StartTraining may carry `faults` (tests and benchmarks)
    max_attempts: int = 3
    step_deadline_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))


@dataclass(frozen=True)
class Deps:
    uow: UnitOfWork
    meta: Meta
    training: TrainingConfig = TrainingConfig()

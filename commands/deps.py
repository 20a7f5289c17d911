"""What a command handler is given: the unit of work, who and what caused the command, and the
few settings that shape a decision (passed in: handlers read no configuration themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.base import Meta
from infra.postgres.uow import UnitOfWork


@dataclass(frozen=True)
class TrainingConfig:
    fault_injection: bool = False  # StartTraining may carry `faults` (tests and benchmarks)
    max_attempts: int = 3
    step_deadline_s: dict[str, float] = field(default_factory=dict)  # settings'; else 600 s


@dataclass(frozen=True)
class ServingConfig:
    fault_injection: bool = False  # StartDeployment may carry `faults` (tests and benchmarks)


@dataclass(frozen=True)
class Deps:
    uow: UnitOfWork
    meta: Meta
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()

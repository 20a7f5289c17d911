"""Who may do what: the roles, and the one table of which roles may send each command or read
each resource (tests cover every row). The command handler and the API both check it here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    DATA_SCIENTIST = "data_scientist"
    ML_ENGINEER = "ml_engineer"
    APPROVER = "approver"
    AUDITOR = "auditor"
    ADMIN = "admin"
    # Veritas's own processes (the saga orchestrators and step workers): the only callers of the
    # internal step commands, so nobody can forge a step's result.
    SERVICE = "service"


ALL_ROLES = frozenset(Role)
_AUTHORS = frozenset({Role.DATA_SCIENTIST, Role.ML_ENGINEER, Role.ADMIN, Role.SERVICE})
_OPERATORS = frozenset({Role.ML_ENGINEER, Role.ADMIN})
_APPROVERS = frozenset({Role.APPROVER})
_SERVICE = frozenset({Role.SERVICE})

# Which roles may issue each command or read each resource. Tests cover every row.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "RegisterModel": _AUTHORS,
    "UpdateModelMetadata": _AUTHORS,
    "RegisterDataset": _AUTHORS,
    "RegisterModelVersion": _AUTHORS,
    "TransitionStage": _OPERATORS,
    "RollbackProduction": _OPERATORS,
    # The training saga archives a version it registered when it compensates.
    "ArchiveModelVersion": _OPERATORS | _SERVICE,
    "SubmitForApproval": _AUTHORS,
    "ApproveSubmission": _APPROVERS,
    "RejectSubmission": _APPROVERS,
    "StartTraining": _AUTHORS,
    "CancelTraining": _AUTHORS,
    **{
        name: _SERVICE
        for name in (
            "DispatchStep",
            "RecordStepResult",
            "RecordStepTimeout",
            "ScheduleRetry",
            "RecordTrainingProgress",
            "BeginCompensation",
            "FinishTraining",
            "RecordDriftCheck",
            "RecordAccuracy",
            "RecordLoadRefused",
            "RecordServedVersion",
            "RecordCanaryMeasurement",
            "RecordScaleOut",
        )
    },
    "SetMonitoringPolicy": _OPERATORS,
    "StartDeployment": _OPERATORS,
    # The deployment saga decides promotions and rollbacks; operators may decide by hand.
    "PromoteCanary": _OPERATORS | _SERVICE,
    "RollBackCanary": _OPERATORS | _SERVICE,
    "AbortDeployment": _OPERATORS | _SERVICE,
    "read:registry": ALL_ROLES,
    "read:audit": frozenset({Role.AUDITOR, Role.ADMIN}),
    "read:monitoring": ALL_ROLES,
    "read:serving": ALL_ROLES,
}


class AuthError(Exception):
    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[Role]


def authorize(principal: Principal, action: str) -> None:
    allowed = PERMISSIONS.get(action, frozenset())
    if not principal.roles & allowed:
        raise AuthError(
            "forbidden",
            f"{action} needs one of the roles {sorted(r.value for r in allowed)}; "
            f"{principal.subject} has {sorted(r.value for r in principal.roles)}",
        )

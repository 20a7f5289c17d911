"""Every command type by name, and the command topic of each bounded context."""

from __future__ import annotations

from commands import governance, monitoring, registry, serving, training
from commands.base import Command

COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (
        registry.RegisterModel,
        registry.UpdateModelMetadata,
        registry.RegisterDataset,
        registry.RegisterModelVersion,
        registry.TransitionStage,
        registry.RollbackProduction,
        registry.ArchiveModelVersion,
        governance.SubmitForApproval,
        governance.ApproveSubmission,
        governance.RejectSubmission,
        *training.PUBLIC,
        *training.INTERNAL,
        *monitoring.PUBLIC,
        *monitoring.INTERNAL,
        *serving.PUBLIC,
        *serving.INTERNAL,
    )
}

COMMAND_TOPICS: dict[str, str] = {
    "registry": "registry.commands",
    "governance": "governance.commands",
    "training": "training.commands",
    "monitoring": "monitoring.commands",
    "serving": "serving.commands",
}


def topic_for(command_type: str) -> str:
    return COMMAND_TOPICS[COMMAND_TYPES[command_type].context]

"""The local stack's service names and their metrics ports: one place for the workers (which serve
their metrics there) and for the lifecycle and health checks (which look there)."""

from __future__ import annotations

from config.settings import Settings

# Fixed offsets from settings.metrics_port_base, so `veritas status` knows where to look.
METRICS_PORT_OFFSET = {"command-handler": 0, "relay": 1, "projector": 2, "training-steps": 3}
# The sagas' orchestrators serve theirs from settings.saga_metrics_base (+ their slot).
SAGA_SLOTS = {
    "training-orchestrator": 0,
    "drift-monitor": 1,
    "retraining-orchestrator": 2,
    "deployment-orchestrator": 3,
    "serving-controller": 4,
}


# Started by `up` only with settings.serving_enabled (else on demand): stopped, they are not down.
SERVING_SERVICES = ("deployment-orchestrator", "serving-controller")


def handler_name(instance: int) -> str:
    """The service name of command-handler instance `instance` (0 keeps the plain name)."""
    return "command-handler" if instance == 0 else f"command-handler-{instance}"


def handler_instance(name: str) -> int | None:
    """The instance number a service name gives a command handler; None for other services."""
    if name == "command-handler":
        return 0
    prefix, _, number = name.rpartition("-")
    return int(number) if prefix == "command-handler" and number.isdigit() else None


def metrics_port(settings: Settings, name: str) -> int:
    if name in SAGA_SLOTS:
        return settings.saga_metrics_base + SAGA_SLOTS[name]
    instance = handler_instance(name)
    if instance:  # instances 1.. follow the fixed offsets
        return settings.metrics_port_base + len(METRICS_PORT_OFFSET) - 1 + instance
    return settings.metrics_port_base + METRICS_PORT_OFFSET[name]

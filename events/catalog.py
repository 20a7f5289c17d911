"""Every event type by name, and the Kafka topic of each bounded context."""

from __future__ import annotations

from events import governance, monitoring, registry, serving, training
from events.base import DomainEvent

EVENT_TYPES: dict[str, type[DomainEvent]] = {
    **registry.EVENTS,
    **governance.EVENTS,
    **training.EVENTS,
    **monitoring.EVENTS,
    **serving.EVENTS,
}

EVENT_TOPICS: dict[str, str] = {
    "registry": "registry.events",
    "governance": "governance.events",
    "training": "training.events",
    "serving": "serving.events",
    "monitoring": "monitoring.events",
}

"""Topics as code: every topic Veritas uses, its partitions and its configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

FOREVER = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
RELAY_POSITION_TOPIC = "veritas.relay.position"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int | None = None  # None: settings.topic_partitions
    config: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("registry.commands"),
    TopicSpec("governance.commands"),
    TopicSpec("training.commands"),
    # The training saga's step commands, keyed by saga id, for the step workers.
    TopicSpec("training.steps"),
    TopicSpec("serving.commands"),
    TopicSpec("monitoring.commands"),
    TopicSpec("events.results"),
    TopicSpec("commands.dlq", config={"retention.ms": "-1"}),
    TopicSpec("registry.events", config=FOREVER),
    TopicSpec("governance.events", config=FOREVER),
    TopicSpec("training.events", config=FOREVER),
    TopicSpec("serving.events", config=FOREVER),
    TopicSpec("monitoring.events", config=FOREVER),
    TopicSpec("inference.requests"),
    TopicSpec("inference.results"),
    TopicSpec("inference.feedback"),
    # Internal: the serving replicas' reports (loads refused, versions put into service), which
    # the serving controller records as serving commands.
    TopicSpec("serving.reports", partitions=1),
    # Internal: the relay's committed position, written in the same Kafka transaction as the events.
    TopicSpec(RELAY_POSITION_TOPIC, partitions=1, config={"cleanup.policy": "compact"}),
)

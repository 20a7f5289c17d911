"""Prometheus metrics of the process-manager runtime (label `saga`: the process manager's name)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_MS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

HANDLED = Counter(
    "veritas_saga_events_handled_total", "Stored events the policy decided on", ["saga"]
)
SKIPPED = Counter(
    "veritas_saga_events_skipped_total",
    "Records not acted on: not in the event store (not_in_store) or not an event (undecodable)",
    ["saga", "reason"],
)
IGNORED = Counter(
    "veritas_saga_events_ignored_total",
    "Events of aggregate types the saga does not follow",
    ["saga"],
)
COMMANDS = Counter("veritas_saga_commands_sent_total", "Commands published", ["saga", "type"])
TIMERS_FIRED = Counter("veritas_saga_timers_fired_total", "Timers fired", ["saga"])
TIMERS_PENDING = Gauge("veritas_saga_timers_pending", "Open timers in the heap", ["saga"])
HANDLE_SECONDS = Histogram(
    "veritas_saga_handle_seconds",
    "One event: load from the store, decide, publish and await the acks",
    ["saga"],
    buckets=_MS,
)
LOAD_SECONDS = Histogram(
    "veritas_saga_load_seconds", "Loading one aggregate from the store", ["saga"], buckets=_MS
)
PUBLISH_SECONDS = Histogram(
    "veritas_saga_publish_seconds",
    "Publishing one decision's commands until the broker acked them all",
    ["saga"],
    buckets=_MS,
)
RETRIES = Counter(
    "veritas_saga_retries_total",
    "Store loads or publishes retried after a transient fault",
    ["saga", "what"],
)

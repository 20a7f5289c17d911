"""Connections to the read models: writers (the projector, replay) and readers (the API)."""

from __future__ import annotations

from typing import Any


def read_model_kwargs(
    schema: str, *, durable: bool = True, prepared: bool = False
) -> dict[str, Any]:
    options = f"-c search_path={schema}"
    if not durable:
        # For projection writers only: a database crash may forget the last commits, but each
        # takes its read-model rows and its Kafka positions together, so they are re-applied.
        options += " -c synchronous_commit=off"
    # Writers use no server-side prepared statements: after `veritas replay` renames schemas,
    # each statement must resolve table names again. Readers may (`prepared`): a cached plan
    # keeps reading the renamed-away schema only until replay drops it right after the swap (the
    # drop invalidates the plan, and Postgres re-resolves the names), and that schema held the
    # same data at the swap.
    return {"autocommit": True, "prepare_threshold": 5 if prepared else None, "options": options}

"""Projections are pure: an event in, row operations out. Two executors run the operations: SQL
statements in the live projector's transaction (`execute`), and an in-memory fold for a bulk
rebuild (`projections.bulk`). One definition of each projection serves both, so a rebuild cannot
drift from the live read models."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg import Cursor
from psycopg.types.json import Jsonb

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Event:
    """What a projection may read of an event envelope."""

    type: str
    aggregate_id: str
    version: int
    actor: str
    occurred_at: datetime
    payload: dict[str, Any]
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class Insert:
    """A new row; it gives every column the projections later update."""

    table: str
    row: Row


@dataclass(frozen=True, slots=True)
class Update:
    """Change the row whose `key` column equals `value` (no row: nothing happens).
    `set`: col = v; `keep`: col = coalesce(v, col); `append`: jsonb col = col || v."""

    table: str
    key: str
    value: Any
    set: Row = field(default_factory=dict)
    keep: Row = field(default_factory=dict)
    append: Row = field(default_factory=dict)


Op = Insert | Update
Projection = Callable[[Event], list[Op]]

# The unique key each table's rows are addressed by (updates) or deduplicated on (inserts).
KEYS: dict[str, tuple[str, ...]] = {
    "rm_models": ("aggregate_id",),
    "rm_model_versions": ("aggregate_id",),
    "rm_submissions": ("submission_id",),
    "rm_stage_history": ("aggregate_id", "event_version"),
    "rm_datasets": ("name", "version"),
    "rm_training_runs": ("run_id",),
    "rm_training_steps": ("attempt_key",),
    "rm_drift_checks": ("check_key",),
    "rm_accuracy_windows": ("window_key",),
    "rm_monitoring_policies": ("policy_key",),
    "rm_deployments": ("model_name",),
    "rm_deployment_history": ("history_key",),
}


def sql_value(v: Any) -> Any:
    """A row value as a query parameter: JSON columns hold dicts and lists."""
    return Jsonb(v) if isinstance(v, dict | list) else v


@lru_cache(maxsize=256)
def _insert_sql(table: str, cols: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"


@lru_cache(maxsize=256)
def _update_sql(
    table: str, key: str, set_: tuple[str, ...], keep: tuple[str, ...], append: tuple[str, ...]
) -> str:
    parts = [f"{c} = %s" for c in set_]
    parts += [f"{c} = coalesce(%s, {c})" for c in keep]
    parts += [f"{c} = {c} || %s" for c in append]
    return f"UPDATE {table} SET {', '.join(parts)} WHERE {key} = %s"


def execute(cur: Cursor, ops: Iterable[Op]) -> None:
    """Run operations as SQL in the cursor's transaction."""
    for op in ops:
        if isinstance(op, Insert):
            cur.execute(
                _insert_sql(op.table, tuple(op.row)), [sql_value(v) for v in op.row.values()]
            )
        else:
            sql = _update_sql(op.table, op.key, tuple(op.set), tuple(op.keep), tuple(op.append))
            values = [*op.set.values(), *op.keep.values(), *op.append.values(), op.value]
            cur.execute(sql, [sql_value(v) for v in values])

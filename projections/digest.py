"""A digest of the read models: equal digests mean equal read-model contents."""

from __future__ import annotations

import hashlib

from psycopg import Connection, sql

# Table -> ordering key. Columns that record wall-clock time of projection are left out.
TABLES: dict[str, str] = {
    "rm_models": "name",
    "rm_model_versions": "model_name, version",
    "rm_stage_history": "aggregate_id, event_version",
    "rm_datasets": "name, version",
    "rm_submissions": "submission_id",
    "rm_training_runs": "run_id",
    "rm_training_steps": "attempt_key",
    "rm_drift_checks": "check_key",
    "rm_accuracy_windows": "window_key",
    "rm_monitoring_policies": "policy_key",
    "rm_deployments": "model_name",
    "rm_deployment_history": "history_key",
    "rm_audit_log": "aggregate_id, version",
    "rm_command_status": "command_id",
    "rm_projection_positions": "topic, kafka_partition",
    "rm_projection_errors": "topic, kafka_partition, kafka_offset",
}
VOLATILE = {"rm_command_status": ["recorded_at"], "rm_projection_errors": ["recorded_at"]}


def digest(conn: Connection, schema: str) -> dict[str, str]:
    """md5 per table, plus "total" over all tables."""
    out: dict[str, str] = {}
    for table, order in TABLES.items():
        drop = VOLATILE.get(table, [])
        row_expr = sql.SQL("to_jsonb(t)") + sql.SQL("").join(
            sql.SQL(" - {}").format(sql.Literal(c)) for c in drop
        )
        query = sql.SQL(
            "SELECT md5(coalesce(string_agg(({row})::text, E'\\n' ORDER BY {order}), '')) "
            "FROM {schema}.{table} t"
        ).format(
            row=row_expr,
            order=sql.SQL(order),
            schema=sql.Identifier(schema),
            table=sql.Identifier(table),
        )
        row = conn.execute(query).fetchone()
        out[table] = str(row[0]) if row else ""
    out["total"] = hashlib.md5("|".join(out[t] for t in TABLES).encode()).hexdigest()
    return out

"""Read-model tables, owned by the projections. Migrations run in order at start, each once."""

from __future__ import annotations

from psycopg import Connection, sql

MIGRATIONS: list[str] = [
    """
    CREATE TABLE rm_models (
        name text PRIMARY KEY, aggregate_id uuid NOT NULL, description text NOT NULL,
        intended_use text NOT NULL, limitations text NOT NULL, owner text NOT NULL,
        tags jsonb NOT NULL DEFAULT '{}', production_version text, created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL);
    CREATE TABLE rm_model_versions (
        model_name text NOT NULL, version text NOT NULL, aggregate_id uuid NOT NULL,
        major int NOT NULL, minor int NOT NULL, patch int NOT NULL, stage text NOT NULL,
        artifact jsonb NOT NULL, lineage jsonb NOT NULL, metrics jsonb NOT NULL,
        registered_by text NOT NULL, approvals jsonb NOT NULL DEFAULT '[]',
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
        PRIMARY KEY (model_name, version));
    CREATE TABLE rm_stage_history (
        aggregate_id uuid NOT NULL, event_version int NOT NULL, model_name text NOT NULL,
        version text NOT NULL, from_stage text NOT NULL, to_stage text NOT NULL,
        reason text NOT NULL, actor text NOT NULL, occurred_at timestamptz NOT NULL,
        PRIMARY KEY (aggregate_id, event_version));
    CREATE INDEX rm_stage_history_model ON rm_stage_history (model_name, occurred_at);
    CREATE TABLE rm_datasets (
        name text NOT NULL, version text NOT NULL, uri text NOT NULL, checksum text NOT NULL,
        description text NOT NULL, registered_by text NOT NULL, created_at timestamptz NOT NULL,
        PRIMARY KEY (name, version));
    CREATE TABLE rm_submissions (
        submission_id uuid PRIMARY KEY, model_name text NOT NULL, version text NOT NULL,
        target_stage text NOT NULL, justification text NOT NULL, submitted_by text NOT NULL,
        required_approvals int NOT NULL, approvers jsonb NOT NULL DEFAULT '[]',
        status text NOT NULL, decided_by text, reason text,
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
    CREATE INDEX rm_submissions_status ON rm_submissions (status, created_at);
    CREATE TABLE rm_audit_log (
        aggregate_id uuid NOT NULL, version int NOT NULL, aggregate_type text NOT NULL,
        event_id uuid NOT NULL, type text NOT NULL, actor text NOT NULL,
        occurred_at timestamptz NOT NULL, correlation_id text NOT NULL, causation_id text NOT NULL,
        envelope jsonb NOT NULL, topic text NOT NULL, kafka_partition int NOT NULL,
        kafka_offset bigint NOT NULL, PRIMARY KEY (aggregate_id, version));
    CREATE INDEX rm_audit_log_type ON rm_audit_log (aggregate_type, aggregate_id);
    CREATE TABLE rm_command_status (
        command_id text PRIMARY KEY, status text NOT NULL, reason_code text, sub_code text,
        message text, events jsonb NOT NULL DEFAULT '[]', recorded_at timestamptz NOT NULL DEFAULT now());
    CREATE TABLE rm_projection_positions (
        topic text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
        PRIMARY KEY (topic, kafka_partition));
    CREATE TABLE rm_projection_errors (
        topic text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
        error text NOT NULL, raw bytea, PRIMARY KEY (topic, kafka_partition, kafka_offset));
    """,
    # The read models' generation: `veritas replay` swaps in a rebuilt schema with the next one, and
    # the live projector re-reads its positions when it sees the number change.
    """
    CREATE TABLE rm_meta (id int PRIMARY KEY DEFAULT 1 CHECK (id = 1), generation bigint NOT NULL);
    INSERT INTO rm_meta (id, generation) VALUES (1, 1);
    """,
    # The event store's total order (the relay's notification_id header), for timelines.
    """
    ALTER TABLE rm_audit_log ADD COLUMN store_seq bigint;
    CREATE INDEX rm_audit_log_seq ON rm_audit_log (store_seq);
    """,
    # Projections address rows by aggregate id.
    """
    CREATE UNIQUE INDEX rm_models_aggregate ON rm_models (aggregate_id);
    CREATE UNIQUE INDEX rm_model_versions_aggregate ON rm_model_versions (aggregate_id);
    """,
    # The audit copy keeps each event's published JSON text as it was (json; jsonb respells
    # numbers: 1e+16 as 10000000000000000, -0.0 as 0.0), so its chains verify from the text.
    "ALTER TABLE rm_audit_log ALTER COLUMN envelope TYPE json USING envelope::text::json;",
    # Training runs (the TrainingRun saga) and each attempt of their steps and compensations.
    """
    CREATE TABLE rm_training_runs (
        run_id uuid PRIMARY KEY, model_name text NOT NULL, dataset_uri text NOT NULL,
        status text NOT NULL, requested_by text NOT NULL, hyperparameters jsonb NOT NULL,
        gates jsonb NOT NULL, trigger jsonb, current_step text, gate_results jsonb NOT NULL,
        compensations jsonb NOT NULL, progress jsonb NOT NULL, retries jsonb NOT NULL,
        cause text, failed_step text, error text, version text, artifact_sha256 text,
        submission_id text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
    CREATE INDEX rm_training_runs_model ON rm_training_runs (model_name, created_at);
    CREATE INDEX rm_training_runs_status ON rm_training_runs (status, created_at);
    CREATE TABLE rm_training_steps (
        attempt_key text PRIMARY KEY, run_id uuid NOT NULL, step text NOT NULL, kind text NOT NULL,
        attempt int NOT NULL, status text NOT NULL, dispatched_at timestamptz NOT NULL,
        deadline_at text NOT NULL, finished_at timestamptz, duration_s double precision,
        result jsonb, error text);
    CREATE INDEX rm_training_steps_run ON rm_training_steps (run_id, dispatched_at);
    """,
    # Monitoring (projections/monitoring.py): checked drift windows, accuracy windows, policies.
    """
    CREATE TABLE rm_drift_checks (
        check_key text PRIMARY KEY, model_name text NOT NULL, version text NOT NULL,
        window_id bigint NOT NULL, score double precision NOT NULL, severity text,
        per_feature jsonb NOT NULL, drifted jsonb NOT NULL, bounds jsonb NOT NULL,
        method jsonb NOT NULL, detected_event_id text, report_sha256 text, retraining jsonb,
        checked_at timestamptz NOT NULL);
    CREATE INDEX rm_drift_checks_model ON rm_drift_checks (model_name, checked_at);
    CREATE INDEX rm_drift_checks_detected ON rm_drift_checks (detected_event_id);
    CREATE TABLE rm_accuracy_windows (
        window_key text PRIMARY KEY, model_name text NOT NULL, version text NOT NULL,
        window_id bigint NOT NULL, n int NOT NULL, correct int NOT NULL,
        accuracy double precision NOT NULL, validation_accuracy double precision,
        dropped boolean NOT NULL, recorded_at timestamptz NOT NULL);
    CREATE TABLE rm_monitoring_policies (
        policy_key text PRIMARY KEY, model_name text NOT NULL, policy jsonb NOT NULL,
        set_by text NOT NULL, set_at timestamptz NOT NULL);
    """,
    # Serving (projections/serving.py): what each model serves, its rollout, its history.
    """
    CREATE TABLE rm_deployments (
        model_name text PRIMARY KEY, aggregate_id text NOT NULL, status text NOT NULL,
        production_version text, canary_version text, rollout_version text, from_version text,
        canary_share double precision NOT NULL, thresholds jsonb NOT NULL, faults jsonb,
        measured jsonb, decision jsonb, last_refusal jsonb, started_at timestamptz,
        updated_at timestamptz NOT NULL);
    CREATE TABLE rm_deployment_history (
        history_key text PRIMARY KEY, model_name text NOT NULL, seq int NOT NULL,
        event_type text NOT NULL, version text, detail jsonb NOT NULL, actor text NOT NULL,
        occurred_at timestamptz NOT NULL);
    CREATE INDEX rm_deployment_history_model ON rm_deployment_history (model_name, seq);
    """,
    # Quarantine (projections/believe.py): why a record was refused, and what it claims to be.
    """
    ALTER TABLE rm_projection_errors ADD COLUMN reason text NOT NULL DEFAULT 'unprojectable',
        ADD COLUMN aggregate_type text, ADD COLUMN aggregate_id text, ADD COLUMN version bigint,
        ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
    CREATE INDEX rm_projection_errors_reason ON rm_projection_errors (reason, recorded_at);
    """,
]


def migrate(conn: Connection, schema: str = "public") -> int:
    """Apply pending migrations in `schema`; returns how many ran."""
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("CREATE TABLE IF NOT EXISTS rm_migrations (version int PRIMARY KEY)")
        conn.execute("LOCK TABLE rm_migrations IN EXCLUSIVE MODE")
        row = conn.execute("SELECT coalesce(max(version), 0) FROM rm_migrations").fetchone()
        done = int(row[0]) if row else 0
        for version, ddl in enumerate(MIGRATIONS[done:], start=done + 1):
            conn.execute(ddl.encode())
            conn.execute("INSERT INTO rm_migrations (version) VALUES (%s)", (version,))
        return len(MIGRATIONS) - done

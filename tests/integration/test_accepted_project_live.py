"""What the write side accepts, the read side projects, on real Postgres: histories of accepted
commands (unicode, big numbers within limits, deep-but-allowed free dicts) go through the live
executor (apply_batch) and the bulk rebuild without a projection error, to identical read models
whose audit copies verify by DESIGN's rule and whose version rows the API can answer with."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict

import psycopg
from hypothesis import HealthCheck, given, settings
from psycopg.rows import dict_row

from api import schemas as api_schemas
from config.settings import Settings
from projections import audit, bulk
from projections.apply import apply_batch
from projections.digest import digest
from projections.schema import migrate
from tests.helpers import Rec, trust_of
from tests.strategies import Step, histories
from tests.unit.harness import SETTINGS
from tests.unit.test_accepted_projects import run_history


def _records(steps: list[Step]) -> list[Rec]:
    h = run_history(steps)
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    recs = []
    for n in h.store.notifications(0, 1_000_000):
        key = (n.topic, n.aggregate_id.int % 3)
        recs.append(Rec(*key, offsets[key], n.state, [("notification_id", str(n.id).encode())]))
        offsets[key] += 1
    return recs


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(histories())
def test_accepted_histories_project_identically_and_verify(
    infra: Settings, steps: list[Step]
) -> None:
    recs = _records(steps)
    live, rebuilt = (f"rm_p_{uuid.uuid4().hex[:8]}" for _ in range(2))
    with psycopg.connect(infra.dsn, autocommit=True) as admin:
        for schema in (live, rebuilt):
            migrate(admin, schema)
        try:
            with _connect(infra, live) as conn, conn.transaction():
                apply_batch(conn, recs, {}, trust_of(SETTINGS))  # type: ignore[arg-type]
            with _connect(infra, rebuilt) as conn:
                bulk.rebuild(conn, iter([recs]), trust_of(SETTINGS))  # type: ignore[list-item]
            errors = admin.execute(
                f"SELECT error FROM {live}.rm_projection_errors".encode()
            ).fetchall()
            assert errors == []
            assert digest(admin, live) == digest(admin, rebuilt)
            for schema in (live, rebuilt):
                v = audit.verify_audit_log(admin, schema)
                assert v.valid and v.events == len(recs), v
            _answerable(admin, live)
        finally:
            for schema in (live, rebuilt):
                admin.execute(f"DROP SCHEMA {schema} CASCADE".encode())


def _connect(s: Settings, schema: str) -> psycopg.Connection:
    return psycopg.connect(s.dsn, autocommit=True, options=f"-c search_path={schema}")


def _answerable(admin: psycopg.Connection, schema: str) -> None:
    """GET /models/{name}/versions/{v} builds its answer from these rows (a null metric was a 500)."""
    with admin.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT * FROM {schema}.rm_model_versions".encode()).fetchall()
    assert rows
    for row in rows:
        answer = api_schemas.Version.model_validate({**row, "stage_history": []})
        json.dumps(answer.model_dump(mode="json"), allow_nan=False)

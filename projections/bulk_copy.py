"""The bulk rebuild's writing side: COPY on a writer thread while the fold goes on, and the fresh
schema's keys and indexes dropped before the COPYs and built once after them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import psycopg
from psycopg import Connection

from projections.ops import Row


class BulkUnsupported(Exception):
    """The history needs the record-by-record rebuild."""


def json_text(v: Any) -> Any:
    """JSON column values as JSON text (COPY's text format lets Postgres parse them)."""
    return orjson.dumps(v).decode() if isinstance(v, dict | list) else v


def copy_rows(conn: Connection, table: str, cols: tuple[str, ...], rows: Iterable[Any]) -> None:
    query = f"COPY {table} ({', '.join(cols)}) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(query) as copy:
        for row in rows:
            copy.write_row(row)


def columns(
    table: str, rows: dict[tuple[Any, ...], Row]
) -> tuple[str, tuple[str, ...], Iterator[list[Any]]]:
    cols = tuple(next(iter(rows.values()), {}))

    def values() -> Iterator[list[Any]]:
        for row in rows.values():
            if tuple(row) != cols:
                raise BulkUnsupported(f"rows of {table} differ in their columns")
            yield [json_text(v) for v in row.values()]

    return table, cols, values()


Job = tuple[str, tuple[str, ...], Iterable[Any]]


class Writer(threading.Thread):
    """Runs the COPYs on `conn` while the caller folds the next records, so that Postgres works
    on the other core. The caller must not use `conn` until close()."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(name="bulk-writer", daemon=True)
        self.conn = conn
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=4)
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    copy_rows(self.conn, *job)
                except (psycopg.Error, BulkUnsupported, TypeError, ValueError) as exc:
                    self.error = exc  # reported by close(); later jobs are drained unused

    def put(self, job: Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.join()
        if isinstance(self.error, BulkUnsupported):
            raise self.error
        if self.error is not None:  # a key or a value the database refuses
            raise BulkUnsupported(f"COPY refused: {type(self.error).__name__}: {self.error}")


BOOKKEEPING = ["rm_meta", "rm_migrations", "rm_projection_positions", "rm_projection_errors"]
_KEYS_AND_INDEXES = """
SELECT format('ALTER TABLE %%I ADD CONSTRAINT %%I %%s', c.relname, k.conname,
              pg_get_constraintdef(k.oid)),
       format('ALTER TABLE %%I DROP CONSTRAINT %%I', c.relname, k.conname)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
 WHERE c.relnamespace = current_schema()::regnamespace AND k.contype IN ('p', 'u')
   AND c.relname <> ALL(%(skip)s)
UNION ALL
SELECT pg_get_indexdef(i.indexrelid), format('DROP INDEX %%I', x.relname)
  FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relname <> ALL(%(skip)s)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
"""


def defer_indexes(conn: Connection) -> list[str]:
    """Drop the read-model tables' keys and indexes in the fresh schema on `conn`, and return the
    DDL that brings them back. One index build over the loaded rows costs a fraction of keeping
    the index up to date row by row during COPY; a duplicate key still fails (at the build)."""
    with conn.transaction():
        rows = conn.execute(_KEYS_AND_INDEXES, {"skip": BOOKKEEPING}).fetchall()
        for _, drop in rows:
            conn.execute(drop)
    return [create for create, _ in rows]


def restore_indexes(conn: Connection, ddl: list[str]) -> None:
    try:
        with conn.transaction():
            conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for statement in ddl:
                conn.execute(statement)
    except psycopg.IntegrityError as exc:
        raise BulkUnsupported(f"key refused after COPY: {exc}") from exc

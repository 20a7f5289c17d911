"""data_preparation: load the dataset (by uri or registered name), split it deterministically from
the seed, compute the standardisation statistics and the drift reference profile, and keep the
snapshot under var/snapshots/<saga id>. Compensation removes it."""

from __future__ import annotations

import shutil
from typing import Any

from ml import datasets, prepare
from ml.errors import DataError
from steps.context import PermanentFailure, StepContext


def _resolve(uri: str, ctx: StepContext) -> tuple[str, dict[str, Any] | None]:
    """A registered dataset's uri and reference; any other uri as it is."""
    if not uri.startswith("dataset:"):
        return uri, None
    name, _, version = uri.removeprefix("dataset:").partition("@")
    with ctx.read_connection() as conn:
        row = conn.execute(
            "SELECT uri, checksum FROM rm_datasets WHERE name = %s AND version = %s",
            (name, version),
        ).fetchone()
    if row is None:
        raise PermanentFailure(f"dataset {name}@{version} is not registered")
    return str(row[0]), {"name": name, "version": version, "registered_checksum": str(row[1])}


def run(saga_id: str, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    uri, ref = _resolve(str(inputs["dataset_uri"]), ctx)
    try:
        table = datasets.load(uri)
        snapshot = prepare.prepare(table, seed=int(inputs.get("seed", 0)))
    except DataError as exc:
        raise PermanentFailure(f"dataset {inputs['dataset_uri']}: {exc}") from exc
    directory = ctx.snapshot_dir(saga_id)
    prepare.save_snapshot(snapshot, directory)
    prepare.save_reference(snapshot, directory)
    return {
        "snapshot": str(directory),
        "dataset_uri": inputs["dataset_uri"],
        "dataset_sha256": snapshot.dataset_sha256,
        # What the registry checks the lineage against: the digest computed from the data.
        "dataset_ref": {**ref, "checksum": snapshot.dataset_sha256} if ref else None,
        "features": len(snapshot.feature_names),
        "classes": snapshot.classes,
        "rows": {"train": len(snapshot.y_train), "holdout": len(snapshot.y_holdout)},
    }


def compensate(saga_id: str, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    directory = ctx.snapshot_dir(saga_id)
    existed = directory.exists()
    shutil.rmtree(directory, ignore_errors=True)
    return {"removed": str(directory) if existed else None}

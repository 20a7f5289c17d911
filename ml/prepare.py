"""The data-preparation step's core (no torch): split, standardisation, reference profile.

``prepare`` splits a ``Table`` deterministically from a seed (stratified), computes the
standardisation statistics from the training split, and profiles the raw training inputs for drift
monitoring. ``save_snapshot`` writes it as ``data.safetensors`` (every array) and
``snapshot.json`` (everything else); nothing is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

from ml.datasets import Table, sha256_of
from ml.errors import DataError
from ml.util import atomic_write, pretty_json, read_json

DATA_FILE = "data.safetensors"
PROFILE_FILE = "profile.json"
REFERENCE_FILE = "reference.safetensors"
META_FILE = "snapshot.json"
SNAPSHOT_FORMAT = "veritas-snapshot-v1"
ARRAYS = ("X_train", "y_train", "X_holdout", "y_holdout", "reference_X")
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# A feature with at most this many unique values, all integral, is "discrete".
DISCRETE_MAX_UNIQUE = 20


@dataclass(frozen=True)
class Snapshot:
    """A prepared dataset: both splits, a reference sample, and their statistics."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_holdout: np.ndarray
    y_holdout: np.ndarray
    reference_X: np.ndarray
    feature_names: list[str]
    classes: list[str]
    dataset_sha256: str
    source: str
    seed: int
    mean: list[float]
    std: list[float]
    profile: dict[str, Any]


def prepare(
    table: Table, seed: int, holdout_fraction: float = 0.2, reference_rows: int = 1000
) -> Snapshot:
    """Split ``table`` (stratified, from ``seed``) and compute its statistics and profile."""
    if not 0.0 < holdout_fraction < 1.0:
        raise DataError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if reference_rows < 1:
        raise DataError(f"reference_rows must be at least 1, got {reference_rows}")
    X_train, X_holdout, y_train, y_holdout = _split(table, seed, holdout_fraction)
    mean, std = standardisation(X_train)
    return Snapshot(
        X_train=X_train,
        y_train=y_train,
        X_holdout=X_holdout,
        y_holdout=y_holdout,
        reference_X=reference_sample(X_train, seed, reference_rows),
        feature_names=list(table.feature_names),
        classes=list(table.classes),
        dataset_sha256=sha256_of(table),
        source=table.source,
        seed=seed,
        mean=mean,
        std=std,
        profile=profile(X_train, y_train, table.feature_names, table.classes),
    )


def _split(
    table: Table, seed: int, holdout_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    try:
        parts = train_test_split(
            table.X, table.y, test_size=holdout_fraction, random_state=seed, stratify=table.y
        )
    except ValueError as exc:  # e.g. a holdout smaller than the number of classes
        raise DataError(f"{table.source}: cannot split stratified: {exc}") from exc
    X_train, X_holdout, y_train, y_holdout = (np.ascontiguousarray(p) for p in parts)
    return X_train, X_holdout, y_train, y_holdout


def standardisation(X: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-feature mean and (population) standard deviation; a zero deviation becomes 1."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return [float(v) for v in mean], [float(v) for v in std]


def reference_sample(X: np.ndarray, seed: int, rows: int) -> np.ndarray:
    """Up to ``rows`` rows of ``X``, drawn without replacement from ``seed``, in original order."""
    if len(X) <= rows:
        return np.ascontiguousarray(X.copy())
    chosen = np.random.default_rng(seed).choice(len(X), size=rows, replace=False)
    return np.ascontiguousarray(X[np.sort(chosen)])


def feature_kind(column: np.ndarray) -> str:
    """``constant`` (one value), ``discrete`` (few integral values) or ``continuous``."""
    uniques = np.unique(column)
    if len(uniques) <= 1:
        return "constant"
    if len(uniques) <= DISCRETE_MAX_UNIQUE and np.all(uniques == np.round(uniques)):
        return "discrete"
    return "continuous"


def feature_stats(column: np.ndarray) -> dict[str, Any]:
    """The reference statistics of one raw feature column."""
    return {
        "kind": feature_kind(column),
        "mean": float(column.mean()),
        "std": float(column.std()),
        "min": float(column.min()),
        "max": float(column.max()),
        "quantiles": {str(q): float(np.quantile(column, q)) for q in QUANTILES},
        "n_unique": len(np.unique(column)),
    }


def profile(
    X: np.ndarray, y: np.ndarray, feature_names: list[str], classes: list[str]
) -> dict[str, Any]:
    """The reference profile of the raw training inputs, for drift monitoring."""
    counts = np.bincount(y, minlength=len(classes))
    return {
        "rows": len(X),
        "feature_order": list(feature_names),
        "features": {name: feature_stats(X[:, j]) for j, name in enumerate(feature_names)},
        "class_counts": {c: int(counts[i]) for i, c in enumerate(classes)},
    }


def metadata(snapshot: Snapshot) -> dict[str, Any]:
    """Everything but the arrays, as written to ``snapshot.json``."""
    return {
        "format": SNAPSHOT_FORMAT,
        "feature_names": snapshot.feature_names,
        "classes": snapshot.classes,
        "dataset_sha256": snapshot.dataset_sha256,
        "source": snapshot.source,
        "seed": snapshot.seed,
        "split": {
            "train": len(snapshot.y_train),
            "holdout": len(snapshot.y_holdout),
            "reference": len(snapshot.reference_X),
        },
        "standardisation": {"mean": snapshot.mean, "std": snapshot.std},
        "profile": snapshot.profile,
    }


def save_snapshot(snapshot: Snapshot, directory: Path) -> list[Path]:
    """Write ``data.safetensors`` and ``snapshot.json`` into ``directory`` (atomically each)."""
    arrays = {name: np.ascontiguousarray(getattr(snapshot, name)) for name in ARRAYS}
    data = atomic_write(directory / DATA_FILE, save(arrays))
    meta = atomic_write(directory / META_FILE, pretty_json(metadata(snapshot)))
    return [data, meta]


def save_reference(snapshot: Snapshot, directory: Path) -> list[Path]:
    """Write what the drift monitor needs: ``profile.json`` and ``reference.safetensors``.

    The profile file holds the profile with the feature names and the dataset digest; the tensor
    file holds ``reference_X`` (raw training inputs, columns in ``feature_order``).
    """
    doc = {
        "dataset_sha256": snapshot.dataset_sha256,
        "feature_names": snapshot.feature_names,
        "profile": snapshot.profile,
    }
    tensors = save({"reference_X": np.ascontiguousarray(snapshot.reference_X)})
    return [
        atomic_write(directory / PROFILE_FILE, pretty_json(doc)),
        atomic_write(directory / REFERENCE_FILE, tensors),
    ]


def load_snapshot(directory: Path) -> Snapshot:
    """Read a snapshot written by ``save_snapshot``; ``DataError`` when it is missing or broken."""
    try:
        meta = read_json(directory / META_FILE)
        arrays = load_file(str(directory / DATA_FILE))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the snapshot in {directory}: {exc}") from exc
    if meta.get("format") != SNAPSHOT_FORMAT or sorted(arrays) != sorted(ARRAYS):
        raise DataError(f"{directory} does not hold a {SNAPSHOT_FORMAT} snapshot")
    std = meta["standardisation"]
    snapshot = Snapshot(
        **{name: arrays[name] for name in ARRAYS},
        feature_names=list(meta["feature_names"]),
        classes=list(meta["classes"]),
        dataset_sha256=meta["dataset_sha256"],
        source=meta["source"],
        seed=int(meta["seed"]),
        mean=list(std["mean"]),
        std=list(std["std"]),
        profile=meta["profile"],
    )
    _check_shapes(snapshot, directory)
    return snapshot


def _check_shapes(s: Snapshot, directory: Path) -> None:
    d = len(s.feature_names)
    ok = (
        s.X_train.shape == (len(s.y_train), d)
        and s.X_holdout.shape == (len(s.y_holdout), d)
        and s.reference_X.ndim == 2
        and s.reference_X.shape[1] == d
        and len(s.mean) == d == len(s.std)
    )
    if not ok:
        raise DataError(f"{directory}: the snapshot's arrays do not match its feature names")

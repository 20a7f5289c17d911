"""Load a classification table from a URI, check it, and digest it (no torch).

URIs:

* ``sklearn:<name>``: ``digits``, ``iris``, ``wine`` or ``breast_cancer``, bundled with
  scikit-learn (nothing is downloaded). Their classes keep scikit-learn's own order.
* ``file:///abs/path.csv`` or ``.parquet``, with a target column named by the ``target``
  argument or ``?target=col`` in the URI. Every other column is a numeric feature. Labels may be
  strings or integers; class indices follow the sorted unique labels (integers numerically,
  strings lexically), whose text forms are kept in ``Table.classes``.

Any unreadable or invalid input raises ``DataError`` with a message naming the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

from ml.errors import DataError

# A stratified split needs at least two rows of each class (one on each side).
MIN_ROWS_PER_CLASS = 2
SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer")


@dataclass(frozen=True)
class Table:
    """Numeric features ``X`` (float64, [n, d]), class indices ``y`` (int64, [n])."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    classes: list[str]
    source: str


def load(uri: str, target: str | None = None) -> Table:
    """Load and check the table that ``uri`` names (see the module docstring)."""
    scheme, _, rest = uri.partition(":")
    if scheme == "sklearn":
        table = _load_sklearn(rest, target, uri)
    elif scheme == "file":
        table = _load_file(uri, target)
    else:
        raise DataError(f"unsupported dataset URI {uri!r}: expected sklearn:<name> or file:///path")
    check(table)
    return table


def check(table: Table) -> None:
    """Raise ``DataError`` unless the table can be split and trained on."""
    n, d = table.X.shape if table.X.ndim == 2 else (0, 0)
    if n == 0:
        raise DataError(f"{table.source}: the table has no rows")
    if d == 0:
        raise DataError(f"{table.source}: the table has no feature columns")
    if not np.isfinite(table.X).all():
        bad = [table.feature_names[j] for j in np.where(~np.isfinite(table.X).all(axis=0))[0]]
        raise DataError(f"{table.source}: NaN or infinite values in feature(s) {bad[:10]}")
    if len(table.classes) < 2:
        raise DataError(f"{table.source}: {len(table.classes)} class(es); at least 2 are needed")
    counts = np.bincount(table.y, minlength=len(table.classes))
    small = [table.classes[i] for i in np.where(counts < MIN_ROWS_PER_CLASS)[0]]
    if small:
        raise DataError(
            f"{table.source}: class(es) {small[:10]} have fewer than {MIN_ROWS_PER_CLASS} rows, "
            "too few for a stratified split"
        )


def sha256_of(table: Table) -> str:
    """The hex sha256 of the table's canonical byte form, independent of how it was loaded.

    The bytes hashed are, in order:

    1. ``{"classes":[...],"feature_names":[...],"format":"veritas-table-v1","shape":[n,d]}``
       as canonical JSON (sorted keys, separators ``(",", ":")``, UTF-8, no ASCII escaping);
    2. one newline byte ``\\n``;
    3. ``X`` as C-ordered little-endian float64 (row by row);
    4. ``y`` as little-endian int64.

    The source URI is not hashed: the same rows from a CSV and a Parquet file give one digest.
    """
    header = {
        "classes": table.classes,
        "feature_names": table.feature_names,
        "format": "veritas-table-v1",
        "shape": [int(s) for s in table.X.shape],
    }
    digest = hashlib.sha256()
    digest.update(
        json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    digest.update(b"\n")
    digest.update(np.ascontiguousarray(table.X, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(table.y, dtype="<i8").tobytes())
    return digest.hexdigest()


def _load_sklearn(name: str, target: str | None, uri: str) -> Table:
    from sklearn import datasets as skd  # scikit-learn is only needed for these URIs

    loaders: dict[str, Callable[[], Any]] = {
        "digits": skd.load_digits,
        "iris": skd.load_iris,
        "wine": skd.load_wine,
        "breast_cancer": skd.load_breast_cancer,
    }
    if name not in loaders:
        raise DataError(
            f"unknown dataset {uri!r}: sklearn datasets are {', '.join(SKLEARN_DATASETS)}"
        )
    if target not in (None, "target"):
        raise DataError(f"{uri}: a bundled dataset has its own target; got target={target!r}")
    bunch = loaders[name]()
    return Table(
        X=np.ascontiguousarray(bunch.data, dtype=np.float64),
        y=np.asarray(bunch.target, dtype=np.int64),
        feature_names=[str(f) for f in bunch.feature_names],
        classes=[str(c) for c in bunch.target_names],
        source=uri,
    )


def _file_path_and_target(uri: str, target: str | None) -> tuple[Path, str]:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise DataError(f"{uri}: only local files are supported (file:///abs/path)")
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise DataError(f"{uri}: the path must be absolute (file:///abs/path.csv)")
    query = parse_qs(parts.query).get("target", [])
    from_uri = query[-1] if query else None
    if target is not None and from_uri is not None and target != from_uri:
        raise DataError(f"{uri}: target {target!r} differs from the URI's target {from_uri!r}")
    chosen = target if target is not None else from_uri
    if not chosen:
        raise DataError(f"{uri}: name the target column (target argument or ?target=col)")
    return path, chosen


def _read_frame(path: Path, uri: str) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataError(
            f"{uri}: unsupported file type {suffix or '(none)'!r}; use .csv or .parquet"
        )
    if not path.is_file():
        raise DataError(f"{uri}: no such file {path}")
    try:
        if suffix == ".csv":
            return pd.read_csv(path, float_precision="round_trip")
        return pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many types for unreadable input
        raise DataError(f"{uri}: cannot read {path.name}: {type(exc).__name__}: {exc}") from exc


def _load_file(uri: str, target: str | None) -> Table:
    path, target_col = _file_path_and_target(uri, target)
    frame = _read_frame(path, uri)
    columns = [str(c) for c in frame.columns]
    if target_col not in columns:
        raise DataError(f"{uri}: no target column {target_col!r} (columns: {columns[:20]})")
    frame.columns = pd.Index(columns)
    if len(frame) == 0:
        raise DataError(f"{uri}: the table has no rows")
    features = frame.drop(columns=[target_col])
    non_numeric = [
        c
        for c in features.columns
        if not pd.api.types.is_numeric_dtype(features[c])
        or pd.api.types.is_bool_dtype(features[c])
        or pd.api.types.is_complex_dtype(features[c])
    ]
    if non_numeric:
        raise DataError(f"{uri}: non-numeric feature column(s) {non_numeric[:10]}")
    y, classes = _encode_labels(frame[target_col], uri)
    return Table(
        X=np.ascontiguousarray(features.to_numpy(dtype=np.float64)),
        y=y,
        feature_names=list(features.columns),
        classes=classes,
        source=uri,
    )


def _encode_labels(labels: pd.Series, uri: str) -> tuple[np.ndarray, list[str]]:
    """Class indices by sorted unique label, and the labels' text forms."""
    if labels.isna().any():
        raise DataError(f"{uri}: the target column has missing labels")
    values = labels.to_numpy()
    if pd.api.types.is_float_dtype(labels):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DataError(f"{uri}: the target column holds non-integral numbers")
        values = values.astype(np.int64)
    elif not pd.api.types.is_integer_dtype(labels):
        values = np.array([str(v) for v in values], dtype=object)
    uniques, indices = np.unique(values, return_inverse=True)
    return indices.astype(np.int64).reshape(-1), [str(u) for u in uniques]

"""ml.datasets: loading from sklearn and files, every DataError case, a load-independent digest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import datasets
from ml.datasets import DataError, load, sha256_of


def _uri(path: Path, target: str | None = None) -> str:
    return f"file://{path}" + (f"?target={target}" if target else "")


def _frame(rows: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 5, size=rows),
            "label": ["cat", "dog", "emu"] * (rows // 3),
        }
    )


@pytest.mark.parametrize(
    ("name", "shape", "n_classes"),
    [("digits", (1797, 64), 10), ("iris", (150, 4), 3), ("wine", (178, 13), 3),
     ("breast_cancer", (569, 30), 2)],
)  # fmt: skip
def test_bundled_sklearn_datasets_load(name: str, shape: tuple[int, int], n_classes: int) -> None:
    table = load(f"sklearn:{name}")
    assert table.X.shape == shape and table.X.dtype == np.float64
    assert table.y.dtype == np.int64 and len(table.classes) == n_classes
    assert len(table.feature_names) == shape[1] and table.source == f"sklearn:{name}"


def test_csv_with_string_labels_maps_sorted_labels_to_indices(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    table = load(_uri(path, "label"))
    assert table.classes == ["cat", "dog", "emu"]
    assert table.feature_names == ["a", "b"]
    assert list(table.y[:3]) == [0, 1, 2]
    assert table.X.dtype == np.float64 and table.X.shape == (12, 2)


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(6.0), "y": [10, 2, 10, 2, 10, 2]})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    table = load(_uri(path), target="y")
    assert table.classes == ["2", "10"]
    assert list(table.y) == [1, 0, 1, 0, 1, 0]


def test_digest_is_the_same_for_csv_parquet_and_the_bundled_copy(tmp_path: Path) -> None:
    iris = load("sklearn:iris")
    frame = pd.DataFrame(iris.X, columns=iris.feature_names)
    frame["species"] = [iris.classes[i] for i in iris.y]
    frame.to_csv(tmp_path / "iris.csv", index=False)
    frame.to_parquet(tmp_path / "iris.parquet")
    from_csv = load(_uri(tmp_path / "iris.csv", "species"))
    from_parquet = load(_uri(tmp_path / "iris.parquet"), target="species")
    assert sha256_of(from_csv) == sha256_of(from_parquet) == sha256_of(iris)
    assert sha256_of(iris) == sha256_of(load("sklearn:iris"))
    changed = datasets.Table(iris.X.copy(), iris.y, iris.feature_names, iris.classes, "x")
    changed.X[0, 0] += 1e-9
    assert sha256_of(changed) != sha256_of(iris)


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "t.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False) if name.endswith(".csv") else frame.to_parquet(path)
    return path


def _expect(uri: str, match: str, target: str | None = None) -> None:
    with pytest.raises(DataError, match=match):
        load(uri, target)


def test_bad_uris_and_files_are_data_errors(tmp_path: Path) -> None:
    _expect("s3://bucket/x.csv", "unsupported dataset URI")
    _expect("sklearn:mnist", "unknown dataset")
    _expect("sklearn:iris?", "unknown dataset")
    _expect(f"file://{tmp_path}/missing.csv?target=y", "no such file")
    _expect("file:relative.csv?target=y", "must be absolute")
    _expect(f"file://{tmp_path}/t.json?target=y", "unsupported file type")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    _expect(_uri(tmp_path / "garbage.parquet", "y"), "cannot read")
    (tmp_path / "empty.csv").write_bytes(b"")
    _expect(_uri(tmp_path / "empty.csv", "y"), "cannot read")


def test_target_problems_are_data_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, _frame())
    _expect(_uri(path), "name the target column")
    _expect(_uri(path, "species"), "no target column 'species'")
    _expect(_uri(path, "label"), "differs", target="other")
    _expect("sklearn:iris", "has its own target", target="petal")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda f: f.assign(a=["x"] * len(f)), "non-numeric feature column"),
        (lambda f: f.assign(a=[True, False] * (len(f) // 2)), "non-numeric feature column"),
        (lambda f: f.assign(a=[np.nan] + [1.0] * (len(f) - 1)), "NaN or infinite"),
        (lambda f: f.assign(b=[np.inf] + [1.0] * (len(f) - 1)), "NaN or infinite"),
        (lambda f: f.assign(label="cat"), "at least 2 are needed"),
        (lambda f: f.assign(label=["cat"] * (len(f) - 1) + ["dog"]), "too few for a stratified"),
        (lambda f: f.iloc[:0], "no rows"),
        (lambda f: f[["label"]], "no feature columns"),
        (lambda f: f.assign(label=[None] + ["cat"] * (len(f) - 1)), "missing labels"),
        (lambda f: f.assign(label=[0.5] + [1.0] * (len(f) - 1)), "non-integral"),
    ],
)
def test_invalid_data_is_a_data_error(tmp_path: Path, change: object, match: str) -> None:
    frame = change(_frame())  # type: ignore[operator]
    for name in ("t.csv", "t.parquet"):
        _expect(_uri(_write(tmp_path, frame, name), "label"), match)

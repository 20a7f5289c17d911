"""ml.prepare: deterministic stratified split, statistics, profile, snapshot files without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml import datasets, prepare
from ml.errors import DataError
from tests.unit.ml_support import digits_snapshot


def test_split_is_deterministic_stratified_and_seed_dependent() -> None:
    table = datasets.load("sklearn:digits")
    a, b, c = prepare.prepare(table, 1), prepare.prepare(table, 1), prepare.prepare(table, 2)
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_holdout, b.y_holdout)
    assert not np.array_equal(a.X_train, c.X_train)
    assert len(a.y_holdout) == 360 and len(a.y_train) == 1437
    share = np.bincount(a.y_holdout) / np.bincount(table.y)
    assert np.allclose(share, 0.2, atol=0.02)  # every class is split the same way


def test_standardisation_comes_from_training_rows_and_zero_std_becomes_one() -> None:
    s = digits_snapshot()
    assert np.allclose(s.mean, s.X_train.mean(axis=0))
    constant = np.where(s.X_train.std(axis=0) == 0)[0]
    assert len(constant) > 0 and all(s.std[j] == 1.0 for j in constant)


def test_profile_kinds_and_statistics() -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([np.full(50, 3.0), rng.integers(0, 4, 50), rng.normal(size=50)])
    profile = prepare.profile(X, np.zeros(50, dtype=np.int64), ["c", "d", "n"], ["k"])
    kinds = {k: v["kind"] for k, v in profile["features"].items()}
    assert kinds == {"c": "constant", "d": "discrete", "n": "continuous"}
    n = profile["features"]["n"]
    assert n["min"] <= n["quantiles"]["0.05"] <= n["quantiles"]["0.5"] <= n["max"]
    assert n["n_unique"] == 50 and profile["rows"] == 50
    assert prepare.feature_kind(np.arange(25.0)) == "continuous"  # too many values to be discrete


def test_reference_sample_is_bounded_and_deterministic() -> None:
    table = datasets.load("sklearn:digits")
    s = prepare.prepare(table, seed=3, reference_rows=100)
    again = prepare.prepare(table, seed=3, reference_rows=100)
    assert s.reference_X.shape == (100, 64)
    assert np.array_equal(s.reference_X, again.reference_X)
    rows = {tuple(r) for r in s.X_train}
    assert all(tuple(r) in rows for r in s.reference_X)
    assert prepare.prepare(table, seed=3).reference_X.shape == (1000, 64)


def test_snapshot_round_trip_has_only_safetensors_and_json(tmp_path: Path) -> None:
    s = digits_snapshot()
    files = prepare.save_snapshot(s, tmp_path / "a")
    assert sorted(p.name for p in files) == ["data.safetensors", "snapshot.json"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "data.safetensors",
        "snapshot.json",
    ]
    assert not files[0].read_bytes().startswith(b"\x80")  # no pickle
    meta = json.loads(files[1].read_text())
    assert meta["split"] == {"train": 1437, "holdout": 360, "reference": 1000}
    loaded = prepare.load_snapshot(tmp_path / "a")
    for name in prepare.ARRAYS:
        assert np.array_equal(getattr(loaded, name), getattr(s, name))
    assert loaded.profile == s.profile and loaded.dataset_sha256 == s.dataset_sha256
    prepare.save_snapshot(loaded, tmp_path / "b")
    for name in ("data.safetensors", "snapshot.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_reference_files_for_the_drift_monitor(tmp_path: Path) -> None:
    s = digits_snapshot()
    profile_path, reference_path = prepare.save_reference(s, tmp_path)
    doc = json.loads(profile_path.read_text())
    assert doc["feature_names"] == s.feature_names and doc["profile"] == s.profile
    from safetensors.numpy import load_file

    assert np.array_equal(load_file(str(reference_path))["reference_X"], s.reference_X)


def test_broken_snapshots_and_impossible_splits_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read the snapshot"):
        prepare.load_snapshot(tmp_path)
    X = np.arange(12.0).reshape(6, 2)
    table = datasets.Table(X, np.array([0, 1, 2, 0, 1, 2]), ["a", "b"], ["x", "y", "z"], "t")
    with pytest.raises(DataError, match="cannot split stratified"):
        prepare.prepare(table, seed=0, holdout_fraction=0.2)
    with pytest.raises(DataError, match="holdout_fraction"):
        prepare.prepare(table, seed=0, holdout_fraction=1.0)

"""Shared helpers of the ml tests (not a test module)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ml import datasets, prepare


@functools.cache
def digits_snapshot(seed: int = 0) -> prepare.Snapshot:
    return prepare.prepare(datasets.load("sklearn:digits"), seed=seed)


def train_artifact(directory: Path, snapshot: prepare.Snapshot, **hp: Any) -> Path:
    """Train with ``hp`` (on the CPU) and save the artifact into ``directory``."""
    from ml.train import Hyperparameters, save_artifact, train

    save_artifact(train(snapshot, Hyperparameters(**hp), device="cpu"), directory)
    return directory

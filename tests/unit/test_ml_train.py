"""ml.train / ml.model / ml.numpy_forward: accuracy, determinism, divergence, the numpy check."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from ml import model as mlp
from ml import numpy_forward
from ml.errors import InvalidJob, TrainingDiverged
from ml.train import Hyperparameters, save_artifact, train
from ml.util import sha256_file
from tests.unit.ml_support import digits_snapshot


def test_digits_reaches_095_holdout_accuracy_with_the_defaults(tmp_path: Path) -> None:
    epochs: list[dict[str, float]] = []
    started = time.perf_counter()
    result = train(digits_snapshot(), Hyperparameters(), device="cpu", on_epoch=epochs.append)
    elapsed = time.perf_counter() - started
    print(f"digits, defaults {Hyperparameters()}: {elapsed:.2f} s, {result.history[-1]}")
    assert result.history[-1]["holdout_accuracy"] >= 0.95
    assert [e["epoch"] for e in epochs] == list(range(1, 21)) and epochs == result.history
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert set(epochs[0]) == {"epoch", "loss", "accuracy", "holdout_loss", "holdout_accuracy"}
    assert result.device == "cpu" and elapsed < 60
    artifact = save_artifact(result, tmp_path)
    assert artifact.sha256 == sha256_file(tmp_path / "model.safetensors")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["classes"] == [str(i) for i in range(10)]
    assert [f["name"] for f in manifest["input_schema"]["features"]][:2] == [
        "pixel_0_0",
        "pixel_0_1",
    ]
    assert manifest["architecture"]["hidden_units"] == 64
    assert manifest["hyperparameters"] == dataclasses.asdict(Hyperparameters())
    assert (
        manifest["frameworks"]["torch"]
        and len(manifest["preprocessing"]["standardisation"]["mean"]) == 64
    )
    assert sorted(manifest["tensors"]) == sorted(numpy_forward.STATE_KEYS)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    hp = Hyperparameters(epochs=3)
    digests = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        result = train(digits_snapshot(), dataclasses.replace(hp, seed=seed), device="cpu")
        digests.append(save_artifact(result, tmp_path / name).sha256)
    assert digests[0] == digests[1] != digests[2]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (
        tmp_path / "b" / "manifest.json"
    ).read_bytes()


def test_a_huge_learning_rate_diverges_permanently() -> None:
    with pytest.raises(TrainingDiverged, match="exceeds 100x the initial loss"):
        train(digits_snapshot(), Hyperparameters(epochs=5, learning_rate=1e6), device="cpu")


def test_an_injected_nan_diverges() -> None:
    s = digits_snapshot()
    X = s.X_train.copy()
    X[5, 10] = np.nan
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(dataclasses.replace(s, X_train=X), Hyperparameters(epochs=2), device="cpu")


def test_numpy_forward_equals_torch_on_the_holdout(tmp_path: Path) -> None:
    s = digits_snapshot()
    result = train(s, Hyperparameters(epochs=3), device="cpu")
    artifact = save_artifact(result, tmp_path)
    state = numpy_forward.load_state(artifact.model_path)
    from_numpy = numpy_forward.predict_proba(state, s.X_holdout)
    loaded, _ = mlp.load_model(tmp_path)
    for model in (result.model, loaded):
        assert np.allclose(from_numpy, mlp.predict_proba(model, s.X_holdout), atol=1e-6)
    assert np.allclose(from_numpy.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "values",
    [{"epochs": 0}, {"epochs": 1.5}, {"learning_rate": float("nan")}, {"learning_rate": -1},
     {"batch_size": True}, {"momentum": 0.9}],
)  # fmt: skip
def test_bad_hyperparameters_are_invalid_jobs(values: dict[str, object]) -> None:
    with pytest.raises(InvalidJob):
        Hyperparameters.from_dict(values)


def test_an_unavailable_device_is_an_invalid_job() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InvalidJob, match="CUDA is not available"):
        train(digits_snapshot(), Hyperparameters(epochs=1), device="cuda")

"""Seeded, deterministic training of the MLP to a safetensors artifact (imports torch).

Reproducibility: ``torch.manual_seed(seed)`` before the weights are made, a seeded
``torch.Generator`` for the shuffling, deterministic algorithms (``set_deterministic_debug_mode``
"error", the same flag as ``use_deterministic_algorithms(True)``) and one CPU thread. On the CPU the same snapshot and hyperparameters give byte-identical ``model.safetensors``.
CUDA is used when ``device="auto"`` and ``torch.cuda.is_available()``.

Divergence (``TrainingDiverged``, permanent): a non-finite batch loss stops the run at once; after
each epoch the run stops when the epoch's mean loss exceeds ``DIVERGENCE_FACTOR`` (100) times the
initial loss (the first batch's loss before any update, about ln(classes) for a fresh model), or
``LOSS_CEILING`` (1e4) outright. Adam at lr=1e6 never goes non-finite on digits (its loss reaches
~1e14-1e15), so the bounds, not the NaN check, catch it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save
from torch.nn import functional

from ml import model as mlp
from ml.environment import framework_versions
from ml.errors import InvalidJob, TrainingDiverged
from ml.prepare import Snapshot
from ml.util import atomic_write, pretty_json, sha256_file

DIVERGENCE_FACTOR = 100.0
LOSS_CEILING = 1e4
EVAL_BATCH = 4096
MANIFEST_FORMAT = "veritas-model-v1"

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Hyperparameters:
    """Training hyperparameters; the defaults reach ~0.97 holdout accuracy on digits."""

    epochs: int = 20
    learning_rate: float = 1e-3
    batch_size: int = 32
    hidden_units: int = 64
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Hyperparameters:
        """Validated hyperparameters; unknown keys or bad values raise ``InvalidJob``."""
        unknown = sorted(set(values) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise InvalidJob(f"unknown hyperparameter(s) {unknown}")
        hp = cls(**values)
        hp.check()
        return hp

    def check(self) -> None:
        for name in ("epochs", "batch_size", "hidden_units", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidJob(f"hyperparameter {name} must be an integer, got {value!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.hidden_units < 1 or self.seed < 0:
            raise InvalidJob(f"epochs, batch_size, hidden_units must be >= 1 and seed >= 0: {self}")
        lr = self.learning_rate
        if (
            isinstance(lr, bool)
            or not isinstance(lr, int | float)
            or not math.isfinite(lr)
            or lr <= 0
        ):
            raise InvalidJob(f"learning_rate must be a finite positive number, got {lr!r}")


@dataclass
class TrainResult:
    """The trained model, its per-epoch history and the manifest to save with it."""

    model: mlp.MLP
    history: list[dict[str, Any]]
    hyperparameters: Hyperparameters
    device: str
    device_name: str | None
    duration_s: float
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    model_path: Path
    manifest_path: Path
    sha256: str
    size_bytes: int


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda[:n]`` as given."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidJob(f"device {device!r} asked for, but CUDA is not available")
        # Deterministic cuBLAS needs this before the first CUDA call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device != "cpu":
        raise InvalidJob(f"unknown device {device!r}: use auto, cpu or cuda[:n]")
    return torch.device(device)


def _seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    # The documented equivalent of torch.use_deterministic_algorithms(True) ("error" mode), which
    # does not import torch._inductor (~5 s and its memory per child) to set a compile-only flag.
    torch.set_deterministic_debug_mode("error")
    torch.set_num_threads(1)
    return torch.Generator().manual_seed(seed)


def _evaluate(model: mlp.MLP, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over ``X``, in batches of ``EVAL_BATCH``."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(X), EVAL_BATCH):
            out = model(X[i : i + EVAL_BATCH])
            target = y[i : i + EVAL_BATCH]
            loss += float(functional.cross_entropy(out, target, reduction="sum"))
            correct += int((out.argmax(dim=1) == target).sum())
    model.train()
    return loss / len(X), correct / len(X)


def _check_loss(loss: float, initial: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(f"epoch {epoch}: the loss became {loss}")
    if loss > LOSS_CEILING or loss > DIVERGENCE_FACTOR * initial:
        raise TrainingDiverged(
            f"epoch {epoch}: mean loss {loss:.4g} exceeds {DIVERGENCE_FACTOR:g}x the initial loss "
            f"{initial:.4g} or {LOSS_CEILING:g}; lower the learning rate"
        )


def _run_epoch(
    model: mlp.MLP,
    optimiser: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor],
    hp: Hyperparameters,
    generator: torch.Generator,
) -> tuple[float, float | None]:
    """One shuffled pass; the mean batch loss, and the first batch's loss before its update."""
    X, y = data
    order = torch.randperm(len(X), generator=generator).to(X.device)
    total, first = 0.0, None
    for i in range(0, len(X), hp.batch_size):
        idx = order[i : i + hp.batch_size]
        optimiser.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(model(X[idx]), y[idx])
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"batch loss became {value} (non-finite inputs or divergence)")
        first = value if first is None else first
        torch.autograd.backward(loss)
        optimiser.step()
        total += value * len(idx)
    return total / len(X), first


def train(
    snapshot: Snapshot,
    hp: Hyperparameters,
    device: str = "auto",
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train the MLP on ``snapshot``'s training split; ``on_epoch`` gets each epoch's record."""
    hp.check()
    dev = resolve_device(device)
    generator = _seed_everything(hp.seed)
    d, c = len(snapshot.feature_names), len(snapshot.classes)
    model = mlp.build(d, hp.hidden_units, c, snapshot.mean, snapshot.std).to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=hp.learning_rate)

    def tensors(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.as_tensor(X, dtype=torch.float32, device=dev),
            torch.as_tensor(y, dtype=torch.int64, device=dev),
        )

    train_data = tensors(snapshot.X_train, snapshot.y_train)
    holdout = tensors(snapshot.X_holdout, snapshot.y_holdout)
    history: list[dict[str, Any]] = []
    initial = math.inf
    started = time.perf_counter()
    model.train()
    for epoch in range(1, hp.epochs + 1):
        loss, first = _run_epoch(model, optimiser, train_data, hp, generator)
        initial = first if epoch == 1 and first is not None else initial
        _check_loss(loss, initial, epoch)
        record = _epoch_record(model, epoch, loss, train_data, holdout)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    duration = time.perf_counter() - started
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    result = TrainResult(model.eval(), history, hp, str(dev), name, duration)
    result.manifest = build_manifest(result, snapshot)
    return result


def _epoch_record(
    model: mlp.MLP,
    epoch: int,
    loss: float,
    train_data: tuple[torch.Tensor, torch.Tensor],
    holdout: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Any]:
    """``loss`` is the epoch's mean batch loss; the accuracies are measured after the epoch."""
    _, accuracy = _evaluate(model, *train_data)
    holdout_loss, holdout_accuracy = _evaluate(model, *holdout)
    return {
        "epoch": epoch,
        "loss": loss,
        "accuracy": accuracy,
        "holdout_loss": holdout_loss,
        "holdout_accuracy": holdout_accuracy,
    }


def build_manifest(result: TrainResult, snapshot: Snapshot) -> dict[str, Any]:
    """What a consumer of the artifact needs besides the tensors (deterministic: no timestamps)."""
    tensors = mlp.state_tensors(result.model)
    last = result.history[-1]
    return {
        "format": MANIFEST_FORMAT,
        "model_file": mlp.MODEL_FILE,
        "input_schema": {
            "features": [{"name": n, "dtype": "float64"} for n in snapshot.feature_names]
        },
        "output_schema": {"type": "class_probabilities", "classes": snapshot.classes},
        "classes": snapshot.classes,
        "preprocessing": {
            "standardisation": {"mean": snapshot.mean, "std": snapshot.std},
            "applied": "inside the model's forward pass, from the mean/std buffers",
        },
        "hyperparameters": asdict(result.hyperparameters),
        "architecture": mlp.architecture(result.model),
        "tensors": {
            k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)}
            for k, v in tensors.items()
        },
        "dataset": {
            "sha256": snapshot.dataset_sha256,
            "source": snapshot.source,
            "split_seed": snapshot.seed,
            "rows": {"train": len(snapshot.y_train), "holdout": len(snapshot.y_holdout)},
        },
        "metrics": {
            "train_accuracy": last["accuracy"],
            "holdout_accuracy": last["holdout_accuracy"],
        },
        "frameworks": framework_versions(),
    }


def save_artifact(result: TrainResult, directory: Path) -> Artifact:
    """Write ``model.safetensors`` (sorted, contiguous tensors) and ``manifest.json``."""
    model_path = atomic_write(directory / mlp.MODEL_FILE, save(mlp.state_tensors(result.model)))
    manifest_path = atomic_write(directory / mlp.MANIFEST_FILE, pretty_json(result.manifest))
    return Artifact(model_path, manifest_path, sha256_file(model_path), model_path.stat().st_size)

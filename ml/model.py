"""The torch MLP classifier (imports torch).

``input -> Linear(hidden_units) -> ReLU -> Linear(classes)`` with the standardisation applied
inside ``forward`` from the ``mean``/``std`` buffers, so the artifact's state dict alone turns raw
features into class logits. ``ml.numpy_forward`` is the same computation without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ml.errors import InvalidJob
from ml.util import read_json

MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
ARCHITECTURE = "mlp-relu-v1"


class MLP(nn.Module):
    """A one-hidden-layer ReLU classifier over standardised inputs."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int, hidden_units: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.hidden = nn.Linear(n_features, hidden_units)
        self.output = nn.Linear(hidden_units, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        logits: torch.Tensor = self.output(torch.relu(self.hidden(z)))
        return logits


def build(
    n_features: int, hidden_units: int, n_classes: int, mean: list[float], std: list[float]
) -> MLP:
    """A fresh MLP (initialised from torch's current RNG state) with the given statistics."""
    model = MLP(n_features, hidden_units, n_classes)
    with torch.no_grad():
        model.mean.copy_(torch.tensor(mean, dtype=torch.float32))
        model.std.copy_(torch.tensor(std, dtype=torch.float32))
    return model


def architecture(model: MLP) -> dict[str, Any]:
    """The architecture as recorded in the manifest."""
    return {
        "type": ARCHITECTURE,
        "inputs": model.hidden.in_features,
        "hidden_units": model.hidden.out_features,
        "outputs": model.output.out_features,
        "activation": "relu",
        "output": "softmax over logits",
        "dtype": "float32",
        "standardisation": "inside forward: (x - mean) / std",
    }


def state_tensors(model: MLP) -> dict[str, torch.Tensor]:
    """The state dict on the CPU, contiguous, sorted by name (deterministic file bytes)."""
    state = model.state_dict()
    return {k: state[k].detach().to("cpu").contiguous() for k in sorted(state)}


def predict_proba(model: MLP, X: np.ndarray) -> np.ndarray:
    """Class probabilities ([n, classes], float32) for raw feature rows ``X``."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
        probs = torch.softmax(model(x), dim=1)
    result: np.ndarray = probs.cpu().numpy()
    return result


def load_model(directory: Path, device: str = "cpu") -> tuple[MLP, dict[str, Any]]:
    """The model and manifest of an artifact directory; ``InvalidJob`` if they do not fit."""
    try:
        manifest: dict[str, Any] = read_json(directory / MANIFEST_FILE)
        arch = manifest["architecture"]
        if arch["type"] != ARCHITECTURE:
            raise InvalidJob(f"{directory}: unknown architecture {arch['type']!r}")
        model = MLP(int(arch["inputs"]), int(arch["hidden_units"]), int(arch["outputs"]))
        model.load_state_dict(load_file(str(directory / MODEL_FILE)), strict=True)
    except InvalidJob:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise InvalidJob(f"cannot load the artifact in {directory}: {exc}") from exc
    return model.to(device).eval(), manifest

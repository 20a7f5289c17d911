"""The MLP's forward pass in numpy from a safetensors state dict (no torch).

The outside check that serving's predictions equal the artifact's own outputs: it reads the
tensors with ``safetensors.numpy`` and computes, in float32,
``softmax(relu(((x - mean) / std) @ hidden.weight.T + hidden.bias) @ output.weight.T + output.bias)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

STATE_KEYS = ("hidden.bias", "hidden.weight", "mean", "output.bias", "output.weight", "std")


def load_state(path: Path) -> dict[str, np.ndarray]:
    """The state dict of ``model.safetensors``; ``ValueError`` if its tensors are not the MLP's."""
    state = load_file(str(path))
    if tuple(sorted(state)) != STATE_KEYS:
        raise ValueError(f"{path}: tensors {sorted(state)} are not an MLP state dict {STATE_KEYS}")
    return state


def logits(state: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Class logits ([n, classes], float32) for raw feature rows ``X``."""
    x = np.asarray(X, dtype=np.float32)
    z = (x - state["mean"]) / state["std"]
    h = np.maximum(z @ state["hidden.weight"].T + state["hidden.bias"], np.float32(0))
    out: np.ndarray = h @ state["output.weight"].T + state["output.bias"]
    return out


def predict_proba(state: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Class probabilities ([n, classes], float32), a numerically stable softmax of the logits."""
    z = logits(state, X)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    result: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return result

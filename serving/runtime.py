"""A verified version as a torch model (imports torch: replicas and the plain baseline only).

``TorchVersion`` deserialises the bytes that ``serving.loader`` verified (never the file again),
checks that the tensors are the manifest's MLP, moves them to the device and runs a warm-up pass,
so the first real batch does not pay torch's first-call costs.
"""

from __future__ import annotations

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from ml.model import ARCHITECTURE, MLP
from serving.loader import LoadedVersion, LoadRefused


def pick_device(prefer: str = "auto") -> str:
    """``cuda`` when asked for or (``auto``) when torch sees a GPU, else ``cpu``."""
    if prefer == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return prefer


class TorchVersion:
    """One loaded version; ``predict`` is safe to call from one thread at a time per caller."""

    def __init__(self, loaded: LoadedVersion, device: str = "cpu", warm_rows: int = 512) -> None:
        self.loaded = loaded
        self.device = torch.device(device)
        manifest = loaded.manifest
        try:
            arch = manifest["architecture"]
            if arch["type"] != ARCHITECTURE:
                raise ValueError(f"unknown architecture {arch['type']!r}")
            names, classes = loaded.feature_names, loaded.classes
            inputs, outputs = int(arch["inputs"]), int(arch["outputs"])
            if len(names) != inputs or len(classes) != outputs:
                raise ValueError(
                    f"{len(names)} features / {len(classes)} classes in the manifest, "
                    f"{inputs} / {outputs} in its architecture"
                )
            model = MLP(inputs, int(arch["hidden_units"]), outputs)
            model.load_state_dict(load_tensors(loaded.model_bytes), strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
            raise LoadRefused(
                "unreadable", f"the tensors are not the manifest's model: {exc}"
            ) from None
        self._model = model.to(self.device).eval()
        self._names = names
        self._index = {n: i for i, n in enumerate(names)}
        self._classes = classes
        if warm_rows > 0:
            self.predict(np.zeros((warm_rows, inputs), dtype=np.float32))

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def feature_names(self) -> list[str]:
        return self._names

    @property
    def feature_index(self) -> dict[str, int]:
        return self._index

    @property
    def classes(self) -> list[str]:
        return self._classes

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class indices and their probabilities for float32 rows ``x``."""
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            probs = torch.softmax(self._model(t), dim=1)
            confidence, labels = probs.max(dim=1)
        return labels.cpu().numpy(), confidence.cpu().numpy()

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Every class's probability (for comparison with ``ml.numpy_forward``)."""
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            out: np.ndarray = torch.softmax(self._model(t), dim=1).cpu().numpy()
        return out


def set_threads(n: int) -> None:
    """Torch's intra-op threads (1 is fastest for this model's small matrices)."""
    torch.set_num_threads(max(1, n))

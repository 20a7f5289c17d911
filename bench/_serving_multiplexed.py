"""A ``@serve.multiplexed`` variant of the model server, for ``bench/serving_layouts.py`` only.

Each replica loads a model lazily on the first request naming it (``multiplexed_model_id``),
through the same loading rule and torch runtime as ``serving``, and keeps at most
``max_models`` of them (LRU). ``args["models"]`` maps a model id to its version spec.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray import serve
from ray.serve import Application

from serving.batching import ServedModel, Snapshot, answer_objects
from serving.loader import VersionSpec, load_verified


@serve.deployment(name="Multiplexed", max_ongoing_requests=512)
class Multiplexed:
    def __init__(self, models: dict[str, dict[str, Any]]) -> None:
        from serving import runtime

        runtime.set_threads(1)
        self.specs = models
        self.loads: list[float] = []

    @serve.multiplexed(max_num_models_per_replica=3)
    async def get_model(self, model_id: str) -> Snapshot:
        from serving.runtime import TorchVersion

        started = time.perf_counter()
        spec = VersionSpec.from_dict(model_id, self.specs[model_id])
        version = await asyncio.to_thread(lambda: TorchVersion(load_verified(spec)))
        self.loads.append(time.perf_counter() - started)
        return Snapshot({model_id: ServedModel(model_id, version)})

    async def predict_block(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        snapshot = await self.get_model(serve.get_multiplexed_model_id())
        return answer_objects(snapshot, requests, time.perf_counter(), "block").answers

    def load_times(self) -> list[float]:
        return self.loads


def build(args: dict[str, Any]) -> Application:
    return Multiplexed.bind(args["models"])  # type: ignore[attr-defined, no-any-return]

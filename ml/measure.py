"""Measurements for the quality gates: accuracy, single-request latency, peak memory (imports torch).

Latency: single-row requests through ``ml.model.predict_proba`` (numpy in, probabilities out, one
CPU thread, garbage collection paused). The models are measured in the same process, interleaved
request by request with the order alternating, so machine load falls on both alike. Each of
``rounds`` rounds times ``requests`` requests per model after ``warmup`` untimed ones and takes
the 95th percentile; the reported p95 is the median of the rounds' p95s. On a shared 2-core
machine one model against itself still gave ratios of 0.87-1.16 (15 runs of 7 x 200), which is
why the latency gate also has an absolute slack.

Peak memory: the peak of ``tracemalloc``'s traced allocations while the artifact is loaded with
``safetensors.numpy`` and one request is answered by ``ml.numpy_forward`` (the serving-equivalent
path). It counts the tensors' bytes plus the activations and Python objects made on the way; it is
repeatable to within ~1% (a few hundred bytes of Python objects; unlike RSS), and it does not depend on torch's allocator.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from ml import model as mlp
from ml import numpy_forward


def accuracy(model: mlp.MLP, X: np.ndarray, labels: list[str], truth: list[str]) -> float:
    """Share of rows whose predicted class name (from ``labels``) equals the true class name."""
    predicted = mlp.predict_proba(model, X).argmax(axis=1)
    hits = sum(labels[int(p)] == t for p, t in zip(predicted, truth, strict=True))
    return hits / len(truth)


def latency_p95_ms(
    models: list[mlp.MLP],
    inputs: list[np.ndarray],
    requests: int = 200,
    rounds: int = 7,
    warmup: int = 20,
) -> list[float]:
    """The p95 single-request latency of each model in ms (median over ``rounds``)."""
    torch.set_num_threads(1)
    per_round: list[list[float]] = [[] for _ in models]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            samples = _one_round(models, inputs, requests, warmup)
            for k, s in enumerate(samples):
                per_round[k].append(float(np.percentile(s, 95)) / 1e6)
    finally:
        if enabled:
            gc.enable()
    return [float(np.median(p)) for p in per_round]


def _one_round(
    models: list[mlp.MLP], inputs: list[np.ndarray], requests: int, warmup: int
) -> list[list[int]]:
    samples: list[list[int]] = [[] for _ in models]
    order = list(range(len(models)))
    for i in range(warmup + requests):
        for k in order if i % 2 == 0 else order[::-1]:
            rows = inputs[k]
            x = rows[i % len(rows) : i % len(rows) + 1]
            started = time.perf_counter_ns()
            mlp.predict_proba(models[k], x)
            elapsed = time.perf_counter_ns() - started
            if i >= warmup:
                samples[k].append(elapsed)
    return samples


def peak_memory_bytes(model_path: Path, row: np.ndarray) -> int:
    """Peak traced bytes while loading ``model_path`` and answering one request (numpy path).

    One untraced run first, so one-time allocations (numpy's and safetensors' first-call caches)
    fall on no model: the first traced run in a process read ~1 KiB more than later ones.
    """
    numpy_forward.predict_proba(numpy_forward.load_state(model_path), row[:1])
    gc.collect()
    tracemalloc.start()
    try:
        state = numpy_forward.load_state(model_path)
        numpy_forward.predict_proba(state, row[:1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return int(peak)

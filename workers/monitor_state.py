"""What the drift monitor reads from the event store and the artifact store (blocking; the worker
calls these on its threads): a model's monitoring state, a version's reference and checker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load as load_tensors

from domain.monitoring import DEFAULTS, Monitor, monitor_id
from domain.registry import ModelVersion, version_id
from infra.postgres.eventstore import EventStore
from ml.drift import DriftChecker
from ml.store import ArtifactStore
from monitoring.joining import Pos
from monitoring.windows import positions_of


@dataclass
class ModelState:
    """The Monitor's policy and, per version, the last window ids and counted positions."""

    policy: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    drift_last: dict[str, int] = field(default_factory=dict)
    accuracy_last: dict[str, int] = field(default_factory=dict)
    drift_counted: dict[str, set[Pos]] = field(default_factory=dict)
    accuracy_counted: dict[str, set[Pos]] = field(default_factory=dict)


def load_model_state(store: EventStore, model_name: str) -> ModelState:
    events = store.load(monitor_id(model_name))
    monitor = Monitor.rehydrate(monitor_id(model_name), events)
    state = ModelState(
        dict(monitor.policy), dict(monitor.drift_windows), dict(monitor.accuracy_windows)
    )
    for e in events:
        book = {"DriftChecked": state.drift_counted, "AccuracyRecorded": state.accuracy_counted}
        if e.type in book:
            got = positions_of(e.payload["bounds"].get("positions", {}))
            book[e.type].setdefault(e.payload["version"], set()).update(got)
    return state


def recorded_positions(
    store: EventStore, model_name: str, etype: str, version: str, window_id: int
) -> set[Pos] | None:
    """The positions the stored window holds; None when the store has no such window."""
    for e in reversed(store.load(monitor_id(model_name))):
        p = e.payload
        if e.type == etype and p["version"] == version and p["window_id"] == window_id:
            return positions_of(p["bounds"].get("positions", {}))
    return None


@dataclass(frozen=True)
class VersionInfo:
    feature_names: list[str]
    checker: DriftChecker | None  # None: the version has no reference profile
    validation_accuracy: float | None


def load_version(
    store: EventStore, artifacts: ArtifactStore, name: str, version: str, policy: dict[str, Any]
) -> VersionInfo | None:
    """The version's reference (kept by the training saga) and a checker built on it once; None
    when the version is not registered."""
    mv = ModelVersion.rehydrate(version_id(name, version), store.load(version_id(name, version)))
    if mv.registered is None:
        return None
    art, acc = mv.registered.artifact, mv.registered.metrics.get("accuracy")
    prof, ref = art.get("profile_sha256"), art.get("reference_sha256")
    if not (prof and ref and artifacts.has(prof) and artifacts.has(ref)):
        return VersionInfo([], None, acc)
    with artifacts.open(prof) as f:
        doc = json.load(f)
    with artifacts.open(ref) as f:
        matrix = load_tensors(f.read())["reference_X"]
    names = [str(n) for n in doc["feature_names"]]
    reference = pd.DataFrame(np.asarray(matrix, dtype=float), columns=names)
    tests = {
        k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in policy["tests"].items()
    }
    checker = DriftChecker(
        reference,
        doc["profile"],
        warning=float(policy["warning"]),
        critical=float(policy["critical"]),
        overrides=tests or None,  # type: ignore[arg-type]
    )
    return VersionInfo(names, checker, acc)

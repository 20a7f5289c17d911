"""What the drift monitor reads from the event store and the artifact store (blocking; the worker
calls these on its threads): a model's monitoring state, a version's reference and checker."""

from __future__ import annotations

import json
import time
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
from monitoring.joining import Pos, Row
from monitoring.windows import bounds, positions_of


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


def labelled_row(row: Row, label: Any, pos: Pos, now: float) -> Row:
    """A prediction joined with its feedback: `prediction` holds whether it was right."""
    right = str(row.prediction) == str(label)
    return Row(row.request_id, row.model_name, row.version, [], right, pos, pos, now)


def accuracy_payload(key: tuple[str, str], window_id: int, rows: list[Row]) -> dict[str, Any]:
    return {
        "model_name": key[0],
        "version": key[1],
        "window_id": window_id,
        "n": len(rows),
        "correct": sum(bool(r.prediction) for r in rows),
        "bounds": bounds(rows),
    }


def wait_result(store: EventStore, cid: str, timeout_s: float = 120.0) -> Any:
    """A command's result, once the handler has stored it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = store.find_results([cid]).get(cid)
        if found is not None:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"no result for {cid} after {timeout_s}s")

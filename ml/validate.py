"""Seed 004's quality gates for a candidate artifact (imports torch; runs in the child process).

Gates, each recorded as ``{gate, passed, value, threshold, baseline, detail}``:

* ``accuracy_min``: holdout accuracy >= the request's ``min_accuracy``.
* ``accuracy_vs_production``: >= ``accuracy_ratio`` (0.95) x production's accuracy measured on
  the same holdout (production's features are taken from the snapshot by name; predictions are
  compared by class name).
* ``latency_p95``: <= ``latency_ratio`` (1.10) x production's p95, measured interleaved in this
  process (``ml.measure``); a difference within ``latency_slack_ms`` also passes, because on a
  shared CPU sub-0.1 ms differences are noise.
* ``peak_memory``: <= ``memory_ratio`` (1.20) x production's (tracemalloc, ``ml.measure``).
* ``schema``: input and output schema equal production's, unless a major change is declared.
* ``security_scan``: ``ml.scan`` finds nothing (0 findings allowed, as seed 004's
  ``max_vulnerabilities: 0``).
* ``data_drift``: ``ml.drift.check`` of holdout vs training inputs; the share of drifted
  features <= ``drift_share`` (0.3, seed 004's critical drift score).

Without a production baseline (a model's first version) the absolute thresholds apply alone and
the comparative gates pass with ``baseline: null`` and a detail that says why.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml import measure
from ml import model as mlp
from ml.errors import InvalidJob
from ml.gates import DRIFT_SHARE, drift_gate, gate
from ml.prepare import Snapshot
from ml.scan import scan
from ml.util import canonical_json, read_json

COMPARATIVE_GATES = ("accuracy_vs_production", "latency_p95", "peak_memory", "schema")
NO_BASELINE = "no production version: the first version is held to the absolute thresholds alone"


@dataclass(frozen=True)
class Thresholds:
    accuracy_ratio: float = 0.95
    latency_ratio: float = 1.10
    latency_slack_ms: float = 0.05
    memory_ratio: float = 1.20
    drift_share: float = DRIFT_SHARE


@dataclass
class ValidationReport:
    passed: bool
    gates: list[dict[str, Any]]
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Loaded:
    directory: Path
    model: mlp.MLP
    manifest: dict[str, Any]
    columns: (
        list[int] | None
    )  # snapshot columns in the model's feature order; None: not all present

    @property
    def features(self) -> list[str]:
        return [f["name"] for f in self.manifest["input_schema"]["features"]]


def _load(directory: Path, snapshot: Snapshot) -> _Loaded:
    model, manifest = mlp.load_model(directory)
    loaded = _Loaded(directory, model, manifest, None)
    names = snapshot.feature_names
    if set(loaded.features) <= set(names):
        loaded.columns = [names.index(f) for f in loaded.features]
    return loaded


def validate(
    snapshot: Snapshot,
    candidate_dir: Path,
    production_dir: Path | None,
    min_accuracy: float,
    declared_major: bool = False,
    thresholds: Thresholds | None = None,
    check_drift: bool = True,
) -> ValidationReport:
    """Run every gate on the candidate (and production, when given) against ``snapshot``."""
    t = thresholds or Thresholds()
    security = _security_gate(candidate_dir)
    if not security["passed"]:  # nothing else is measured on a file that failed the scan
        return _rejected(candidate_dir, security, check_drift)
    cand = _load(candidate_dir, snapshot)
    if cand.features != snapshot.feature_names or cand.manifest["classes"] != snapshot.classes:
        raise InvalidJob(f"{candidate_dir}: the candidate's schema is not the snapshot's")
    prod = _load(production_dir, snapshot) if production_dir is not None else None
    metrics = _metrics(cand, snapshot)
    base = _metrics(prod, snapshot) if prod is not None else None
    _latencies(cand, prod, snapshot, metrics, base)
    gates = [
        gate(
            "accuracy_min",
            metrics["accuracy"] >= min_accuracy,
            metrics["accuracy"],
            min_accuracy,
            None,
            "holdout accuracy against the request's minimum",
        ),
        _accuracy_vs_production(metrics, base, t),
        _ratio_gate(
            "latency_p95", "latency_p95_ms", metrics, base, t.latency_ratio, t.latency_slack_ms
        ),
        _ratio_gate("peak_memory", "peak_memory_bytes", metrics, base, t.memory_ratio, 0.0),
        _schema_gate(cand, prod, declared_major),
        security,
    ]
    skipped = []
    if check_drift:
        gates.append(drift_gate(snapshot, t.drift_share))
    else:
        skipped.append("data_drift")
    return ValidationReport(all(g["passed"] for g in gates), gates, metrics, base, skipped)


def _rejected(candidate_dir: Path, security: dict[str, Any], check_drift: bool) -> ValidationReport:
    path = candidate_dir / mlp.MODEL_FILE
    size = path.stat().st_size if path.is_file() else None
    metrics: dict[str, Any] = {
        "accuracy": None,
        "latency_p95_ms": None,
        "peak_memory_bytes": None,
        "size_bytes": size,
    }
    skipped = ["accuracy_min", *COMPARATIVE_GATES, *(["data_drift"] if check_drift else [])]
    return ValidationReport(False, [security], metrics, None, skipped)


def _metrics(loaded: _Loaded, snapshot: Snapshot) -> dict[str, Any]:
    truth = [snapshot.classes[int(i)] for i in snapshot.y_holdout]
    acc = None
    if loaded.columns is not None:
        X = snapshot.X_holdout[:, loaded.columns]
        acc = measure.accuracy(loaded.model, X, loaded.manifest["classes"], truth)
    path = loaded.directory / mlp.MODEL_FILE
    return {
        "accuracy": acc,
        "latency_p95_ms": None,
        "peak_memory_bytes": measure.peak_memory_bytes(path, _requests(loaded, snapshot)),
        "size_bytes": path.stat().st_size,
    }


def _requests(loaded: _Loaded, snapshot: Snapshot) -> np.ndarray:
    """Holdout rows in the model's feature order; zeros of its width if the snapshot lacks some."""
    if loaded.columns is not None:
        return np.ascontiguousarray(snapshot.X_holdout[:, loaded.columns])
    return np.zeros((len(snapshot.X_holdout), len(loaded.features)))


def _latencies(
    cand: _Loaded,
    prod: _Loaded | None,
    snapshot: Snapshot,
    metrics: dict[str, Any],
    base: dict[str, Any] | None,
) -> None:
    loaded = [cand] if prod is None else [cand, prod]
    p95 = measure.latency_p95_ms(
        [m.model for m in loaded], [_requests(m, snapshot) for m in loaded]
    )
    metrics["latency_p95_ms"] = p95[0]
    if base is not None:
        base["latency_p95_ms"] = p95[1]


def _accuracy_vs_production(
    metrics: dict[str, Any], base: dict[str, Any] | None, t: Thresholds
) -> dict[str, Any]:
    name, value = "accuracy_vs_production", metrics["accuracy"]
    if base is None:
        return gate(name, True, value, None, None, NO_BASELINE)
    if base["accuracy"] is None:
        why = "production's features are not all in this holdout (a schema change): not comparable"
        return gate(name, True, value, None, None, why)
    threshold = t.accuracy_ratio * base["accuracy"]
    detail = f"{t.accuracy_ratio:g} x production's accuracy on the same holdout"
    return gate(name, value >= threshold, value, threshold, base["accuracy"], detail)


def _ratio_gate(
    name: str,
    key: str,
    metrics: dict[str, Any],
    base: dict[str, Any] | None,
    ratio: float,
    slack: float,
) -> dict[str, Any]:
    value = metrics[key]
    if base is None:
        return gate(name, True, value, None, None, NO_BASELINE)
    threshold = ratio * base[key]
    passed = value <= threshold or value - base[key] <= slack
    detail = f"<= {ratio:g} x production's, measured in the same process"
    detail += f", or within {slack:g} of it" if slack else ""
    return gate(name, passed, value, threshold, base[key], detail)


def schema_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"input": manifest["input_schema"], "output": manifest["output_schema"]}


def _schema_gate(cand: _Loaded, prod: _Loaded | None, declared_major: bool) -> dict[str, Any]:
    value = _fingerprint(schema_of(cand.manifest))
    if prod is None:
        return gate("schema", True, value, "equal to production's", None, NO_BASELINE)
    baseline = _fingerprint(schema_of(prod.manifest))
    if value == baseline:
        return gate("schema", True, value, "equal to production's", baseline, "schemas are equal")
    added = sorted(set(cand.features) - set(prod.features))
    removed = sorted(set(prod.features) - set(cand.features))
    classes = (prod.manifest["classes"], cand.manifest["classes"])
    detail = (
        f"features added {added[:10]}, removed {removed[:10]}; classes {classes[0]} -> {classes[1]}"
    )
    detail += " (a declared major change)" if declared_major else " (no major change declared)"
    return gate("schema", declared_major, value, "equal to production's", baseline, detail)


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def _security_gate(directory: Path) -> dict[str, Any]:
    """``ml.scan`` of the candidate's model file against its manifest (before anything loads it)."""
    try:
        manifest = read_json(directory / mlp.MANIFEST_FILE)
    except (OSError, ValueError) as exc:
        findings = [f"the manifest cannot be read: {exc}"]
    else:
        findings = scan(directory / mlp.MODEL_FILE, manifest if isinstance(manifest, dict) else {})
    detail = "; ".join(findings) if findings else "safetensors only, tensors only, layout exact"
    return gate("security_scan", not findings, len(findings), 0, None, detail)

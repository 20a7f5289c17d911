"""One batch of requests against one snapshot of what is served (no torch, no Ray, no Kafka).

``answer`` is the whole request path after the transport: parse each message, route it to the
production or canary version of its model, check its features against that version's manifest,
run one forward pass per version, and return one result or error per message, in input order.
The caller reads ``Snapshot`` once per batch, so every result of a batch comes from the versions
that were serving when the batch began, and the version that answered is in every result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from serving import metrics
from serving.protocol import (
    Rejected,
    Request,
    error_dict,
    feature_row,
    parse,
    parse_object,
    result_dict,
    routes_to_canary,
)


class Predictor(Protocol):
    """A loaded, verified version (``serving.runtime.TorchVersion``; a fake in unit tests)."""

    @property
    def version(self) -> str: ...
    @property
    def feature_names(self) -> list[str]: ...
    @property
    def feature_index(self) -> dict[str, int]: ...
    @property
    def classes(self) -> list[str]: ...
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class indices and their probabilities for float32 rows ``x``."""
        ...


@dataclass(frozen=True)
class ServedModel:
    """What one model serves: its production version, and a canary with its bucket threshold."""

    name: str
    production: Predictor | None
    canary: Predictor | None = None
    canary_threshold: int = 0
    # Injected into the canary (tests only): {"delay_ms": float, "error": bool}.
    canary_faults: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything served at one moment; replaced whole (one reference) by a swap."""

    models: Mapping[str, ServedModel] = field(default_factory=dict)
    generation: int = 0

    def versions(self) -> dict[str, dict[str, str | None]]:
        return {
            name: {
                "production": m.production.version if m.production else None,
                "canary": m.canary.version if m.canary else None,
            }
            for name, m in self.models.items()
        }


@dataclass
class Outcome:
    """A batch's answers (input order) and what the metrics need."""

    answers: list[dict[str, Any]]
    keys: list[bytes | None]
    predicted: int = 0
    errors: int = 0


def _route(snapshot: Snapshot, request: Request) -> tuple[Predictor, str, Any] | Rejected:
    served = snapshot.models.get(request.model_name)
    if served is None:
        return Rejected(
            request.request_id, request.model_name, "unknown_model", "no such model is served"
        )
    if served.canary is not None and routes_to_canary(request.request_id, served.canary_threshold):
        return served.canary, "canary", served.canary_faults
    if served.production is None:
        return Rejected(
            request.request_id,
            request.model_name,
            "no_production_version",
            "the model has no production version loaded",
        )
    return served.production, "production", None


def answer(
    snapshot: Snapshot,
    items: Sequence[Request | Rejected],
    keys: Sequence[bytes | None],
    started: float,
    path: str = "kafka",
) -> Outcome:
    """Results for parsed ``items`` (``started``: ``time.perf_counter()`` at their arrival)."""
    answers: list[dict[str, Any] | None] = [None] * len(items)
    groups: dict[int, tuple[Predictor, str, list[int], list[Any], Any]] = {}
    for i, item in enumerate(items):
        if isinstance(item, Rejected):
            answers[i] = error_dict(item)
            continue
        routed = _route(snapshot, item)
        if isinstance(routed, Rejected):
            answers[i] = error_dict(routed)
            continue
        predictor, slot, faults = routed
        row = feature_row(item, predictor.feature_names, predictor.feature_index)
        if isinstance(row, Rejected):
            answers[i] = error_dict(row)
            continue
        group = groups.setdefault(id(predictor), (predictor, slot, [], [], faults))
        group[2].append(i)
        group[3].append(row)
    predicted = 0
    # Production first: a slow canary in the same batch does not add to the stable latency.
    ordered = sorted(groups.values(), key=lambda g: g[1] != "production")
    for predictor, slot, idx, rows, faults in ordered:
        predicted += _predict_group(predictor, slot, idx, rows, items, answers, started, faults)
    metrics.BATCH_ROWS.labels(path).observe(len(items))
    out = [a if a is not None else _internal(items[i]) for i, a in enumerate(answers)]
    errors = len(out) - predicted
    for a in out:
        code = a.get("reason_code")
        if code is not None:
            metrics.ERRORS.labels(code).inc()
    return Outcome(out, list(keys), predicted, errors)


def _predict_group(
    predictor: Predictor,
    slot: str,
    idx: list[int],
    rows: list[Any],
    items: Sequence[Request | Rejected],
    answers: list[dict[str, Any] | None],
    started: float,
    faults: Mapping[str, Any] | None = None,
) -> int:
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused below
            x = np.asarray(rows, dtype=np.float32)
    except (OverflowError, ValueError, TypeError):  # beyond float64
        x = np.full((len(rows), len(predictor.feature_names)), np.inf, dtype=np.float32)
        for j, row in enumerate(rows):
            try:
                x[j] = np.asarray(row, dtype=np.float32)
            except (OverflowError, ValueError, TypeError):
                continue
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        for bad in np.flatnonzero(~finite).tolist():
            item = items[idx[bad]]
            assert isinstance(item, Request)
            answers[idx[bad]] = error_dict(
                Rejected(
                    item.request_id,
                    item.model_name,
                    "schema_violation",
                    "every feature must be a finite float32",
                )
            )
        keep = np.flatnonzero(finite)
        idx, x = [idx[k] for k in keep.tolist()], x[keep]
        if not idx:
            return 0
    try:
        labels, confidence = _forward(predictor, x, faults)
    except Exception as exc:  # a failing version answers errors that name it; nothing stops
        for i in idx:
            item = items[i]
            assert isinstance(item, Request)
            answers[i] = error_dict(
                Rejected(item.request_id, item.model_name, "internal_error", str(exc)[:200]),
                predictor.version,
            )
        return 0
    latency = time.perf_counter() - started
    classes, version = predictor.classes, predictor.version
    latency_ms = latency * 1000.0
    for j, (c, p) in enumerate(zip(labels.tolist(), confidence.tolist(), strict=True)):
        item = items[idx[j]]
        assert isinstance(item, Request)
        answers[idx[j]] = result_dict(item, version, classes[c], p, latency_ms)
    model = items[idx[0]].model_name or ""
    metrics.LATENCY.observe((model, version), latency, len(idx))
    metrics.REQUESTS.labels(model, version, slot).inc(len(idx))
    return len(idx)


def _forward(
    predictor: Predictor, x: np.ndarray, faults: Mapping[str, Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    if faults:
        if float(faults.get("delay_ms") or 0) > 0:
            time.sleep(float(faults["delay_ms"]) / 1000.0)
        if faults.get("error"):
            raise RuntimeError(f"injected fault in version {predictor.version}")
    return predictor.predict(x)


def _internal(item: Request | Rejected) -> dict[str, Any]:
    return error_dict(
        Rejected(item.request_id, item.model_name, "internal_error", "no answer was computed")
    )


def answer_messages(
    snapshot: Snapshot, messages: Sequence[tuple[bytes | None, bytes | None]], started: float
) -> Outcome:
    """Results for raw ``(key, value)`` messages."""
    items = [parse(value, key) for key, value in messages]
    return answer(snapshot, items, [k for k, _ in messages], started)


def answer_objects(
    snapshot: Snapshot, requests: Sequence[Any], started: float, path: str = "handle"
) -> Outcome:
    """Results for already-decoded request objects (the handle path)."""
    items = [parse_object(r) for r in requests]
    return answer(snapshot, items, [None] * len(items), started, path)

"""Inference messages and canary routing (no torch, no Ray).

Request (UTF-8 JSON, Kafka key = ``request_id``)::

    {"request_id": str, "model_name": str, "features": [number...] | {name: number},
     "correlation_id": str | null}

``features`` is a list in the manifest's feature order, or a map from every feature name to its
value. A result is ``{request_id, model_name, model_version, prediction, confidence, latency_ms,
correlation_id}`` where ``prediction`` is the class label from the manifest, ``confidence`` its
probability and ``latency_ms`` the time in the server from taking the request off the topic (or
the handle call) to its prediction. An error is ``{request_id, model_name, model_version, error,
reason_code}`` (``model_version`` null unless a version was reached and failed).

Canary routing: ``canary_bucket(request_id)`` is the first 8 bytes of sha256(request_id) as a
big-endian integer, mod 10,000; a request goes to the canary when its bucket is below
``round(share * 10,000)``. The same request id always lands in the same bucket, so a replay
routes the same way, and the share is exact over the bucket space.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson

ReasonCode = Literal[
    "invalid_json",
    "schema_violation",
    "unknown_model",
    "wrong_feature_count",
    "no_production_version",
    "internal_error",
]
BUCKETS = 10_000
MAX_ID_CHARS = 256
_REQUEST_KEYS = frozenset({"request_id", "model_name", "features", "correlation_id"})


def canary_bucket(request_id: str) -> int:
    """The request's stable bucket in [0, 10,000)."""
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def share_threshold(share: float) -> int:
    """Buckets below this go to the canary (``ValueError`` outside [0, 1])."""
    if not (isinstance(share, int | float) and 0.0 <= share <= 1.0):
        raise ValueError(f"canary share must be in [0, 1], got {share!r}")
    return round(share * BUCKETS)


def routes_to_canary(request_id: str, threshold: int) -> bool:
    return threshold > 0 and canary_bucket(request_id) < threshold


@dataclass(slots=True)
class Request:
    """A request that parsed and passed the schema (features not yet checked against a model)."""

    request_id: str
    model_name: str
    features: list[Any] | dict[str, Any]
    correlation_id: str | None


@dataclass(slots=True)
class Rejected:
    """A request that gets an error result."""

    request_id: str | None
    model_name: str | None
    reason_code: ReasonCode
    error: str


def _key_text(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        return key.decode("utf-8")[:MAX_ID_CHARS]
    except UnicodeDecodeError:
        return None


def parse(value: bytes | None, key: bytes | None = None) -> Request | Rejected:
    """One message's value (and key, for the id of a request whose body is not JSON)."""
    try:
        body = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        return Rejected(_key_text(key), None, "invalid_json", f"not UTF-8 JSON: {exc}")
    return parse_object(body, key)


def parse_object(body: Any, key: bytes | None = None) -> Request | Rejected:
    """A decoded request body (the handle path gives one directly)."""
    if not isinstance(body, dict):
        return Rejected(_key_text(key), None, "schema_violation", "the request is not an object")
    rid, model = body.get("request_id"), body.get("model_name")
    rid_ok = isinstance(rid, str) and 0 < len(rid) <= MAX_ID_CHARS
    model_ok = isinstance(model, str) and 0 < len(model) <= MAX_ID_CHARS
    known_id = rid if rid_ok else _key_text(key)
    known_model = model if model_ok else None
    problem = None
    if not rid_ok:
        problem = f"request_id must be a string of 1-{MAX_ID_CHARS} characters"
    elif not model_ok:
        problem = f"model_name must be a string of 1-{MAX_ID_CHARS} characters"
    elif not isinstance(body.get("features"), list | dict):
        problem = "features must be a list of numbers or a map of feature name to number"
    elif not isinstance(body.get("correlation_id"), str | None):
        problem = "correlation_id must be a string or null"
    elif not _REQUEST_KEYS.issuperset(body):
        problem = f"unknown field(s) {sorted(set(body) - _REQUEST_KEYS)}"
    if problem is not None:
        return Rejected(known_id, known_model, "schema_violation", problem)
    return Request(str(rid), str(model), body["features"], body.get("correlation_id"))


_NUMERIC = frozenset({int, float})


def _number(v: Any) -> bool:
    return type(v) in _NUMERIC


def feature_row(
    request: Request, names: list[str], index: dict[str, int]
) -> list[float] | Rejected:
    """The request's features in manifest order, or why they do not fit the model."""
    feats = request.features
    n = len(names)
    if isinstance(feats, dict):
        if len(feats) != n:
            return _reject(request, "wrong_feature_count", f"{len(feats)} features, expected {n}")
        row = [0.0] * n
        for name, v in feats.items():
            i = index.get(name)
            if i is None:
                return _reject(request, "schema_violation", f"unknown feature {name[:80]!r}")
            if not _number(v):
                return _reject(
                    request, "schema_violation", f"feature {name[:80]!r} is not a number"
                )
            row[i] = float(v)
        return row
    if len(feats) != n:
        return _reject(request, "wrong_feature_count", f"{len(feats)} features, expected {n}")
    if not _NUMERIC.issuperset(map(type, feats)):  # bool, str, null, nested: not numbers
        return _reject(request, "schema_violation", "every feature must be a number")
    return feats  # finiteness is checked on the whole batch (serving.batching)


def _reject(request: Request, code: ReasonCode, error: str) -> Rejected:
    return Rejected(request.request_id, request.model_name, code, error)


def result_dict(
    request: Request, version: str, prediction: str, confidence: float, latency_ms: float
) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "model_name": request.model_name,
        "model_version": version,
        "prediction": prediction,
        "confidence": confidence,
        "latency_ms": round(latency_ms, 3),
        "correlation_id": request.correlation_id,
    }


def error_dict(rejected: Rejected, version: str | None = None) -> dict[str, Any]:
    """``model_version`` names the version that failed (null when none was reached), so the
    drift monitor and the canary's count join every answer by request id and version."""
    return {
        "request_id": rejected.request_id,
        "model_name": rejected.model_name,
        "model_version": version,
        "error": rejected.error,
        "reason_code": rejected.reason_code,
    }


def dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)

"""serving.protocol and serving.batching: messages, canary routing, a batch's answers."""

from __future__ import annotations

import hashlib
import json
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from serving.batching import ServedModel, Snapshot, answer_messages, answer_objects
from serving.protocol import canary_bucket, routes_to_canary, share_threshold

NAMES = ["a", "b", "c"]


class Fake:
    """A predictor whose class is the index of its largest feature."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.feature_names = NAMES
        self.feature_index = {n: i for i, n in enumerate(NAMES)}
        self.classes = ["x", "y", "z"]
        self.calls: list[int] = []

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(len(x))
        return x.argmax(axis=1), np.full(len(x), 0.5, dtype=np.float32)


def _snapshot(canary_share: float = 0.0, production: bool = True) -> Snapshot:
    served = ServedModel(
        "m",
        Fake("1.0.0") if production else None,
        Fake("2.0.0") if canary_share else None,
        share_threshold(canary_share),
    )
    return Snapshot(MappingProxyType({"m": served}), 1)


def _msg(body: Any, key: bytes | None = b"k") -> tuple[bytes | None, bytes | None]:
    return key, body if isinstance(body, bytes | None) else json.dumps(body).encode()


def test_the_bucket_is_sha256_first_8_bytes_mod_10000_and_stable() -> None:
    rid = "req-42"
    expected = int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "big") % 10_000
    assert canary_bucket(rid) == expected == canary_bucket("req-42")
    assert share_threshold(0.05) == 500 and share_threshold(0) == 0 and share_threshold(1) == 10_000
    with pytest.raises(ValueError):
        share_threshold(1.5)


def test_the_canary_share_is_close_to_asked_and_a_replay_routes_the_same() -> None:
    ids = [f"r-{i}" for i in range(100_000)]
    for share in (0.05, 0.3):
        t = share_threshold(share)
        first = [routes_to_canary(r, t) for r in ids]
        assert abs(sum(first) / len(ids) - share) < 0.005
        assert first == [routes_to_canary(r, t) for r in ids]  # replay: same routing
    assert not any(routes_to_canary(r, 0) for r in ids[:1000])
    assert all(routes_to_canary(r, 10_000) for r in ids[:1000])


def test_answers_route_by_request_id_and_carry_the_version() -> None:
    snap = _snapshot(canary_share=0.3)
    msgs = [
        _msg({"request_id": f"r-{i}", "model_name": "m", "features": [1, 2, 3]})
        for i in range(2000)
    ]
    out = answer_messages(snap, msgs, 0.0)
    assert out.predicted == 2000 and out.errors == 0
    t = share_threshold(0.3)
    for i, a in enumerate(out.answers):
        assert a["request_id"] == f"r-{i}" and a["prediction"] == "z"
        assert a["model_version"] == ("2.0.0" if routes_to_canary(f"r-{i}", t) else "1.0.0")
        assert set(a) == {
            "request_id", "model_name", "model_version", "prediction", "confidence",
            "latency_ms", "correlation_id",
        }  # fmt: skip
    m = snap.models["m"]
    assert isinstance(m.production, Fake) and isinstance(m.canary, Fake)
    assert len(m.production.calls) == 1 and len(m.canary.calls) == 1  # one pass per version


def test_a_feature_map_is_put_in_manifest_order() -> None:
    out = answer_objects(
        _snapshot(),
        [{"request_id": "r", "model_name": "m", "features": {"c": 9, "a": 1, "b": 2}, "correlation_id": "c1"}],
        0.0,
    )  # fmt: skip
    assert out.answers[0]["prediction"] == "z" and out.answers[0]["correlation_id"] == "c1"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (None, "invalid_json"),
        ([1, 2], "schema_violation"),
        ({"model_name": "m", "features": [1, 2, 3]}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": "1,2,3"}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": [1, 2, 3], "extra": 1}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": [1, "2", 3]}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": [1, True, 3]}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": [1, None, 3]}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": [1, 1e39, 3]}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": [1, 10**400, 3]}, "invalid_json"),
        ({"request_id": "r", "model_name": "m", "features": {"a": 1, "b": 2, "d": 3}}, "schema_violation"),
        ({"request_id": "r", "model_name": "m", "features": [1, 2]}, "wrong_feature_count"),
        ({"request_id": "r", "model_name": "m", "features": {"a": 1}}, "wrong_feature_count"),
        ({"request_id": "r", "model_name": "nope", "features": [1, 2, 3]}, "unknown_model"),
    ],
)  # fmt: skip
def test_each_bad_request_gets_its_error_and_the_batch_goes_on(value: Any, code: str) -> None:
    good = _msg({"request_id": "ok", "model_name": "m", "features": [3, 2, 1]})
    out = answer_messages(_snapshot(), [good, _msg(value, b"the-key"), good], 0.0)
    assert [a.get("reason_code") for a in out.answers] == [None, code, None]
    err = out.answers[1]
    assert set(err) == {"request_id", "model_name", "model_version", "error", "reason_code"}
    assert err["error"]
    assert err["request_id"] in ("the-key", "r")  # the key names a request whose body cannot
    assert out.answers[0]["prediction"] == "x" and out.predicted == 2


def test_a_model_without_production_answers_no_production_version() -> None:
    out = answer_objects(
        _snapshot(production=False), [{"request_id": "r", "model_name": "m", "features": [1, 2, 3]}], 0.0
    )  # fmt: skip
    assert out.answers[0]["reason_code"] == "no_production_version"

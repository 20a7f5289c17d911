"""serving.host (swaps, refusals, reuse) and serving.runtime (the numpy forward pass agrees)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml import numpy_forward, signing
from serving.batching import answer_objects
from serving.host import ModelHost
from serving.loader import LoadedVersion, VersionSpec, load_verified
from tests.serving_support import cached_artifacts, holdout_rows, signed_spec

KEY = signing.generate_private_key()


@pytest.fixture(scope="module")
def arts() -> list[Path]:
    return cached_artifacts([1, 2, 3])


class Recorded:
    """A stand-in predictor built from a verified version (no torch)."""

    def __init__(self, loaded: LoadedVersion) -> None:
        self.loaded = loaded
        self.version = loaded.version
        self.feature_names = loaded.feature_names
        self.feature_index = {n: i for i, n in enumerate(self.feature_names)}
        self.classes = loaded.classes

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(x), dtype=np.int64), np.ones(len(x), dtype=np.float32)


def _host(built: list[str]) -> ModelHost:
    def factory(loaded: LoadedVersion) -> Recorded:
        built.append(loaded.version)
        return Recorded(loaded)

    return ModelHost(factory=factory)


def _config(
    prod: dict[str, Any] | None, canary: dict[str, Any] | None = None, share: float = 0.05
) -> dict[str, Any]:
    return {"models": {"digits": {"production": prod, "canary": canary, "canary_share": share}}}  # fmt: skip


def test_a_swap_loads_only_what_changed_and_reuses_a_promoted_canary(arts: list[Path]) -> None:
    built: list[str] = []
    host = _host(built)
    v1, v2 = signed_spec(arts[0], KEY, "1.0.0"), signed_spec(arts[1], KEY, "1.1.0")
    reports = host.apply(_config(v1))
    assert host.snapshot.versions() == {"digits": {"production": "1.0.0", "canary": None}}
    assert [r["kind"] for r in reports] == ["serving"] and built == ["1.0.0"]
    host.apply(_config(v1, v2, 0.2))
    assert host.snapshot.versions()["digits"] == {"production": "1.0.0", "canary": "1.1.0"}
    assert built == ["1.0.0", "1.1.0"] and host.snapshot.models["digits"].canary_threshold == 2000
    before = host.snapshot.generation
    reports = host.apply(_config(v2))  # promote: the canary's verified tensors are reused
    assert built == ["1.0.0", "1.1.0"] and host.snapshot.generation == before + 1
    assert host.snapshot.versions()["digits"] == {"production": "1.1.0", "canary": None}
    assert {(r["slot"], r["version"], r["previous_version"]) for r in reports} == {
        ("production", "1.1.0", "1.0.0"),
        ("canary", None, "1.1.0"),
    }
    host.apply({"models": {}})
    assert host.snapshot.versions() == {}


def test_a_refused_version_keeps_the_previous_one_serving_and_is_reported(
    arts: list[Path], tmp_path: Path
) -> None:
    built: list[str] = []
    host = _host(built)
    v1 = signed_spec(arts[0], KEY, "1.0.0")
    host.apply(_config(v1))
    tampered = tmp_path / "t"
    shutil.copytree(arts[1], tampered)
    bad_sha = signed_spec(tampered, KEY, "2.0.0")
    (tampered / "model.safetensors").write_bytes(
        b"x" + (tampered / "model.safetensors").read_bytes()
    )
    forged = {**signed_spec(arts[1], KEY, "2.1.0"), "signature": signed_spec(arts[1], signing.generate_private_key(), "2.1.0")["signature"]}  # fmt: skip
    unapproved = signed_spec(arts[2], KEY, "2.2.0", approved_for=["staging"])
    for spec, reason in ((bad_sha, "sha256_mismatch"), (forged, "bad_signature"), (unapproved, "not_approved")):  # fmt: skip
        reports = host.apply(_config(spec))
        assert [(r["kind"], r["reason"], r["still_serving"]) for r in reports] == [
            ("load_refused", reason, "1.0.0")
        ]
        assert host.snapshot.versions()["digits"]["production"] == "1.0.0"
    assert built == ["1.0.0"]  # nothing refused was ever deserialised
    assert [r["reason"] for r in host.refusals()] == ["sha256_mismatch", "bad_signature", "not_approved"]  # fmt: skip
    last = host.reports()[-1]["seq"]
    assert host.reports(since=last) == []
    # A first deploy whose production is refused serves no_production_version errors.
    fresh = _host([])
    fresh.apply(_config(unapproved))
    out = answer_objects(fresh.snapshot, [{"request_id": "r", "model_name": "digits", "features": [0.0] * 64}], 0.0)  # fmt: skip
    assert out.answers[0]["reason_code"] == "no_production_version"


def test_a_malformed_config_is_reported_and_changes_nothing(arts: list[Path]) -> None:
    host = _host([])
    host.apply(_config(signed_spec(arts[0], KEY, "1.0.0")))
    reports = host.apply({"models": {"digits": {"production": {"version": "9"}}}})
    assert [r["kind"] for r in reports] == ["config_invalid"]
    assert host.snapshot.versions()["digits"]["production"] == "1.0.0"
    assert host.apply(_config(signed_spec(arts[0], KEY, "1.0.0"), share=2.0))[0]["kind"] == "config_invalid"  # fmt: skip


def test_a_batch_that_began_on_the_old_snapshot_finishes_on_it(arts: list[Path]) -> None:
    host = _host([])
    host.apply(_config(signed_spec(arts[0], KEY, "1.0.0")))
    old = host.snapshot
    t = threading.Thread(target=host.apply, args=(_config(signed_spec(arts[1], KEY, "1.1.0")),))
    t.start()
    t.join()
    req = [{"request_id": "r", "model_name": "digits", "features": [0.0] * 64}]
    assert answer_objects(old, req, 0.0).answers[0]["model_version"] == "1.0.0"
    assert answer_objects(host.snapshot, req, 0.0).answers[0]["model_version"] == "1.1.0"


def test_torch_predictions_equal_the_numpy_forward_pass(arts: list[Path]) -> None:
    from serving.runtime import TorchVersion

    spec = VersionSpec.from_dict("digits", signed_spec(arts[0], KEY, "1.0.0"))
    torch_version = TorchVersion(load_verified(spec))
    X = np.asarray(holdout_rows(500), dtype=np.float32)
    state = numpy_forward.load_state(arts[0] / "model.safetensors")
    expected = numpy_forward.predict_proba(state, X)
    np.testing.assert_allclose(torch_version.probabilities(X), expected, rtol=1e-4, atol=1e-6)
    labels, confidence = torch_version.predict(X)
    assert (labels == expected.argmax(axis=1)).all()
    np.testing.assert_allclose(confidence, expected.max(axis=1), rtol=1e-4, atol=1e-6)
    # Through the request path: the same rows as JSON lists and as name maps.
    names = torch_version.feature_names
    reqs = [{"request_id": f"r{i}", "model_name": "digits", "features": row if i % 2 else dict(zip(names, row, strict=True))} for i, row in enumerate(X.tolist())]  # fmt: skip
    host = ModelHost(warm_rows=4)
    host.apply(_config(signed_spec(arts[0], KEY, "1.0.0")))
    out = answer_objects(host.snapshot, reqs, 0.0).answers
    assert [a["prediction"] for a in out] == [str(c) for c in expected.argmax(axis=1)]

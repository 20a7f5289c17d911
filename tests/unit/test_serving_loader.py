"""serving.loader: the loading rule, each refusal, and verification before deserialisation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ml import signing
from serving.loader import LoadRefused, VersionSpec, load_verified
from tests.serving_support import cached_artifacts, signed_spec

KEY = signing.generate_private_key()


@pytest.fixture(scope="module")
def artifact() -> Path:
    return cached_artifacts([1, 2, 3])[0]


def _spec(raw: dict[str, Any]) -> VersionSpec:
    return VersionSpec.from_dict("digits", raw)


def _refused(spec: VersionSpec, **kw: Any) -> LoadRefused:
    with pytest.raises(LoadRefused) as info:
        load_verified(spec, **kw)
    return info.value


def test_a_signed_approved_artifact_loads(artifact: Path) -> None:
    raw = signed_spec(artifact, KEY, "1.0.0")
    loaded = load_verified(_spec(raw))
    assert loaded.version == "1.0.0" and loaded.key_id == signing.key_id(KEY.public_key())
    assert loaded.model_bytes == (artifact / "model.safetensors").read_bytes()
    assert len(loaded.feature_names) == 64 and loaded.classes == [str(i) for i in range(10)]
    # The directory works as well as the file; a given manifest is used instead of the file's.
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert load_verified(_spec({**raw, "artifact": str(artifact), "manifest": manifest}))


def test_one_byte_changed_is_a_sha256_mismatch(artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "a"
    shutil.copytree(artifact, copy)
    raw = signed_spec(copy, KEY, "1.0.0")
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(data))
    refused = _refused(_spec(raw))
    assert refused.reason == "sha256_mismatch" and raw["sha256"] in refused.detail


def test_a_signature_by_another_key_is_a_bad_signature(artifact: Path) -> None:
    raw = signed_spec(artifact, KEY, "1.0.0")
    other = signing.generate_private_key()
    forged = {**raw, "signature": signed_spec(artifact, other, "1.0.0")["signature"]}
    assert _refused(_spec(forged)).reason == "bad_signature"
    # The other key's own signature verifies, but that key is not a trusted one.
    own = signed_spec(artifact, other, "1.0.0")
    trusted = {signing.key_id(KEY.public_key())}
    assert _refused(_spec(own), trusted_key_ids=trusted).reason == "bad_signature"
    assert load_verified(_spec(raw), trusted_key_ids=trusted)


def test_a_changed_manifest_or_garbage_signature_is_a_bad_signature(artifact: Path) -> None:
    raw = signed_spec(artifact, KEY, "1.0.0")
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["classes"] = list(reversed(manifest["classes"]))
    assert _refused(_spec({**raw, "manifest": manifest})).reason == "bad_signature"
    assert _refused(_spec({**raw, "signature": "not base64"})).reason == "bad_signature"
    assert _refused(_spec({**raw, "public_key": "not a key"})).reason == "bad_signature"


def test_a_stage_not_approved_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    raw = {
        "version": "1.0.0",
        "artifact": str(tmp_path / "absent.safetensors"),
        "sha256": "0" * 64,
        "signature": "x",
        "public_key": "x",
        "approved_for": ["staging"],
        "stage": "production",
    }
    assert _refused(_spec(raw)).reason == "not_approved"
    assert _refused(_spec({**raw, "approved_for": []})).reason == "not_approved"
    assert _refused(_spec({**raw, "approved_for": ["production"]})).reason == "unreadable"


def test_a_missing_or_corrupt_manifest_is_unreadable(artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(artifact, copy)
    raw = signed_spec(copy, KEY, "1.0.0")
    (copy / "manifest.json").write_text("{not json")
    assert _refused(_spec(raw)).reason == "unreadable"
    (copy / "manifest.json").unlink()
    assert _refused(_spec(raw)).reason == "unreadable"


def test_signed_bytes_that_are_no_model_are_unreadable_at_deserialisation(
    artifact: Path, tmp_path: Path
) -> None:
    from serving.runtime import TorchVersion

    copy = tmp_path / "c"
    shutil.copytree(artifact, copy)
    (copy / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    loaded = load_verified(_spec(signed_spec(copy, KEY, "1.0.0")))  # signed garbage passes...
    with pytest.raises(LoadRefused) as info:
        TorchVersion(loaded)  # ...but is refused when deserialised
    assert info.value.reason == "unreadable"


def test_malformed_specs_name_the_field() -> None:
    with pytest.raises(ValueError, match="lacks 'sha256'"):
        VersionSpec.from_dict("m", {"version": "1", "artifact": "a", "approved_for": []})
    with pytest.raises(ValueError, match="approved_for"):
        VersionSpec.from_dict(
            "m",
            {
                "version": "1",
                "artifact": "a",
                "sha256": "s",
                "signature": "x",
                "public_key": "k",
                "approved_for": "production",
            },
        )

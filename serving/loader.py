"""The loading rule: what a replica checks before it deserialises one tensor (no torch).

A version is served only when all of these hold, checked in this order:

1. ``not_approved``: the stage it is to serve in is one of the registry's ``approved_for`` stages.
2. ``unreadable``: the artifact file (and the manifest, when it is not given) can be read.
3. ``sha256_mismatch``: the sha256 of the bytes read equals the registry's expected sha256.
4. ``bad_signature``: the Ed25519 signature verifies over ``ml.signing.artifact_message(sha256,
   manifest)`` with the given public key (and that key's id is a trusted one, when a set of
   trusted ids is given).

The bytes that were hashed are the bytes later deserialised (``LoadedVersion.model_bytes``): no
second read of the file, so nothing can change between the check and the load. A manifest that
does not describe the tensors is ``unreadable`` at deserialisation (``serving.runtime``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ml import signing

RefusalReason = Literal["sha256_mismatch", "bad_signature", "not_approved", "unreadable"]
REASONS: tuple[RefusalReason, ...] = (
    "sha256_mismatch",
    "bad_signature",
    "not_approved",
    "unreadable",
)
MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
MAX_ARTIFACT_BYTES = 2 << 30


class LoadRefused(Exception):
    """A version that must not be served; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RefusalReason = reason
        self.detail = detail


@dataclass(frozen=True)
class VersionSpec:
    """What the registry says about one version to serve (``user_config`` carries it as a dict).

    ``artifact`` is the ``model.safetensors`` file or the directory holding it; ``manifest`` is
    the manifest dict, or ``None`` to read ``manifest.json`` beside the artifact (it is signed,
    so either way it must match the signature). ``public_key`` is a PEM Ed25519 public key.
    """

    model_name: str
    version: str
    artifact: str
    sha256: str
    signature: str
    public_key: str
    approved_for: tuple[str, ...]
    stage: str = "production"
    manifest: Mapping[str, Any] | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, model_name: str, raw: Mapping[str, Any]) -> VersionSpec:
        """A spec from ``user_config``; ``ValueError`` naming the field when one is malformed."""
        try:
            approved = raw["approved_for"]
            if isinstance(approved, str) or not isinstance(approved, Collection):
                raise ValueError("approved_for must be a list of stages")
            manifest = raw.get("manifest")
            if manifest is not None and not isinstance(manifest, Mapping):
                raise ValueError("manifest must be an object")
            spec = cls(
                model_name=model_name,
                version=str(raw["version"]),
                artifact=str(raw["artifact"]),
                sha256=str(raw["sha256"]),
                signature=str(raw["signature"]),
                public_key=str(raw["public_key"]),
                approved_for=tuple(str(s) for s in approved),
                stage=str(raw.get("stage", "production")),
                manifest=manifest,
            )
        except KeyError as exc:
            raise ValueError(f"version spec of {model_name!r} lacks {exc.args[0]!r}") from None
        return spec

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "signature": self.signature,
            "public_key": self.public_key,
            "approved_for": list(self.approved_for),
            "stage": self.stage,
        }
        if self.manifest is not None:
            out["manifest"] = dict(self.manifest)
        return out

    @property
    def model_path(self) -> Path:
        path = Path(self.artifact)
        return path / MODEL_FILE if path.is_dir() else path


@dataclass(frozen=True)
class LoadedVersion:
    """A version that passed every check, with the verified bytes (not yet deserialised)."""

    spec: VersionSpec
    manifest: dict[str, Any]
    model_bytes: bytes = field(repr=False)
    key_id: str

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def feature_names(self) -> list[str]:
        return [str(f["name"]) for f in self.manifest["input_schema"]["features"]]

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.manifest["classes"]]


def check_approval(spec: VersionSpec) -> None:
    if spec.stage not in spec.approved_for:
        raise LoadRefused(
            "not_approved",
            f"{spec.model_name} {spec.version} is approved for {list(spec.approved_for)}, "
            f"not {spec.stage!r}",
        )


def _read(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise LoadRefused("unreadable", f"{path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise LoadRefused("unreadable", f"{path}: larger than {limit} bytes")
    return data


def _manifest(spec: VersionSpec) -> dict[str, Any]:
    if spec.manifest is not None:
        return dict(spec.manifest)
    path = spec.model_path.parent / MANIFEST_FILE
    try:
        value = json.loads(_read(path, 64 << 20).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoadRefused("unreadable", f"{path}: not a JSON manifest ({exc})") from None
    if not isinstance(value, dict):
        raise LoadRefused("unreadable", f"{path}: the manifest is not a JSON object")
    return value


def check_signature(
    spec: VersionSpec,
    sha256: str,
    manifest: dict[str, Any],
    trusted_key_ids: Collection[str] | None,
) -> str:
    """The signer's key id; ``LoadRefused("bad_signature")`` unless the signature verifies."""
    try:
        key = signing.public_key_from_pem(spec.public_key.encode("ascii"))
        message = signing.artifact_message(sha256, manifest)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise LoadRefused("bad_signature", f"unusable key or manifest: {exc}") from None
    kid = signing.key_id(key)
    if trusted_key_ids is not None and kid not in trusted_key_ids:
        raise LoadRefused("bad_signature", f"key {kid} is not a trusted signing key")
    if not signing.verify(key, message, spec.signature):
        raise LoadRefused(
            "bad_signature", f"the signature does not verify with key {kid} over {sha256}"
        )
    return kid


def load_verified(
    spec: VersionSpec,
    trusted_key_ids: Collection[str] | None = None,
    max_bytes: int = MAX_ARTIFACT_BYTES,
) -> LoadedVersion:
    """Apply the loading rule to ``spec``: a ``LoadedVersion`` or ``LoadRefused(reason)``."""
    check_approval(spec)
    data = _read(spec.model_path, max_bytes)
    manifest = _manifest(spec)
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256.lower():
        raise LoadRefused(
            "sha256_mismatch",
            f"{spec.model_path}: sha256 {actual}, the registry expects {spec.sha256}",
        )
    kid = check_signature(spec, actual, manifest, trusted_key_ids)
    return LoadedVersion(spec=spec, manifest=manifest, model_bytes=data, key_id=kid)

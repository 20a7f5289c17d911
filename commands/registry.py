"""Registry commands (topic registry.commands)."""

from __future__ import annotations

from pydantic import BaseModel

from commands.base import (
    STRICT,
    Command,
    FreeDict,
    Metrics,
    Name,
    SemVer,
    Sha256,
    ShortText,
    Stage,
    Tags,
    Text,
    Uri,
)


class RegistryCommand(Command):
    context = "registry"


class RegisterModel(RegistryCommand):
    # v2 renamed v1's `purpose` to `intended_use` (seed 000's wording); see commands.upcasting.
    schema_version = 2
    name: Name
    description: Text
    intended_use: Text
    limitations: Text
    owner: Name | None = None
    tags: Tags = {}


class UpdateModelMetadata(RegistryCommand):
    name: Name
    description: Text | None = None
    intended_use: Text | None = None
    limitations: Text | None = None
    tags: Tags | None = None


class RegisterDataset(RegistryCommand):
    name: Name
    version: SemVer
    uri: Uri
    checksum: Sha256
    description: ShortText = ""


class Artifact(BaseModel):
    model_config = STRICT
    uri: Uri
    sha256: Sha256
    signature: ShortText
    # Set by the training saga: the signing key's id (the signature is Ed25519 over the digest and
    # the manifest) and the digests of what is kept with the artifact in the store.
    public_key_id: ShortText | None = None
    manifest_sha256: Sha256 | None = None
    card_sha256: Sha256 | None = None
    profile_sha256: Sha256 | None = None
    reference_sha256: Sha256 | None = None


class DatasetRef(BaseModel):
    model_config = STRICT
    name: Name
    version: SemVer
    checksum: Sha256


class Lineage(BaseModel):
    model_config = STRICT
    parent_version: SemVer | None = None
    dataset: DatasetRef | None = None
    training_config: FreeDict = {}
    environment: FreeDict = {}
    code_revision: ShortText | None = None


class RegisterModelVersion(RegistryCommand):
    model_name: Name
    version: SemVer
    artifact: Artifact
    lineage: Lineage = Lineage()
    metrics: Metrics = {}


class TransitionStage(RegistryCommand):
    model_name: Name
    version: SemVer
    stage: Stage


class RollbackProduction(RegistryCommand):
    model_name: Name
    reason: Text


class ArchiveModelVersion(RegistryCommand):
    model_name: Name
    version: SemVer
    reason: ShortText = ""

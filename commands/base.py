"""Command envelope, the base Command model and shared field types."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Uri = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Tags = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], ShortText], Field(max_length=50)
]
Stage = Annotated[str, StringConstraints(pattern=r"^(development|staging|production|archived)$")]
TargetStage = Annotated[str, StringConstraints(pattern=r"^(staging|production)$")]

_SEMVER = re.compile(r"^v?(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")
_SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


def _semver(value: str) -> str:
    m = _SEMVER.match(value.strip())
    if not m:
        raise ValueError("must be a semantic version MAJOR.MINOR.PATCH, e.g. 1.2.3")
    return ".".join(m.groups())


def _sha256(value: str) -> str:
    v = value.strip().lower()
    if not _SHA256.match(v):
        raise ValueError("must be a sha256 hex digest (64 hex characters, optional 'sha256:')")
    return v.removeprefix("sha256:")


SemVer = Annotated[str, AfterValidator(_semver)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
Metrics = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], float], Field(max_length=100)
]
FreeDict = Annotated[dict[str, Any], Field(max_length=200)]


def semver_key(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


class Command(BaseModel):
    """Base of every command payload. Subclasses set `context` and may raise `schema_version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    context: ClassVar[str]
    schema_version: ClassVar[int] = 1


COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class CommandEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
    type: Annotated[str, StringConstraints(max_length=64)]
    schema_version: int = Field(ge=1)
    issued_at: datetime
    correlation_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    payload: dict[str, Any]

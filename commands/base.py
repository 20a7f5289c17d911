"""Command envelope, the base Command model and shared field types."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

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
    dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[float, Field(allow_inf_nan=False)],
    ],
    Field(max_length=100),
]
FreeDict = Annotated[dict[str, Any], Field(max_length=200)]


def _timestamp(value: object) -> object:
    # Strict mode takes no string for a datetime; a plain lax one would take numbers, numeric
    # strings and naive times. Only an ISO 8601 string with a time zone is an issued_at.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-12-02T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("must name its time zone, e.g. 2026-12-02T12:00:00Z")
    return parsed


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
# Strict mode takes no string for a UUID either: these fields parse the JSON string.
LaxUUID = Annotated[UUID, Field(strict=False)]
# Commands are validated strictly (no "2" for an int, "1.5" for a float or 1 for a bool); a
# float field still takes a JSON integer.
STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)


def semver_key(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


class Command(BaseModel):
    """Base of every command payload. Subclasses set `context` and may raise `schema_version`."""

    model_config = STRICT
    context: ClassVar[str]
    schema_version: ClassVar[int] = 1


COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


class CommandEnvelope(BaseModel):
    model_config = STRICT

    command_id: Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
    type: Annotated[str, StringConstraints(max_length=64)]
    schema_version: int = Field(ge=1)
    issued_at: Timestamp
    correlation_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    payload: dict[str, Any]

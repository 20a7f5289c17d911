"""Turns the raw bytes and headers of a command message into a ready command, a rejection or a
dead letter. Pure: no I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import ValidationError

from commands.base import COMMAND_ID_PATTERN, Command, CommandEnvelope
from commands.catalog import COMMAND_TYPES
from commands.results import CommandResult
from commands.upcasting import upcast
from veritas.auth import AuthError, Principal, authenticate, authorize
from veritas.settings import Settings

_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str


@dataclass(frozen=True)
class Ready:
    envelope: CommandEnvelope
    command: Command
    principal: Principal


def _errors(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts[:10])


def decode(
    settings: Settings, raw: bytes | None, authorization: str | None
) -> Ready | CommandResult | DeadLetter:
    if raw is None:
        return DeadLetter("invalid_json", "empty message")
    if len(raw) > settings.command_max_bytes:
        return DeadLetter(
            "too_large", f"{len(raw)} bytes; the limit is {settings.command_max_bytes}"
        )
    try:
        doc = json.loads(raw.decode("utf-8"))  # DESIGN: UTF-8 only, never UTF-16/32 or a BOM
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return DeadLetter("invalid_json", f"not UTF-8 JSON: {exc}")
    command_id = doc.get("command_id") if isinstance(doc, dict) else None
    if not isinstance(command_id, str) or not _COMMAND_ID.match(command_id):
        return DeadLetter("schema_violation", "envelope is not an object with a valid command_id")
    try:
        principal = authenticate(settings, authorization)
        ctype = doc.get("type")
        if not isinstance(ctype, str) or ctype not in COMMAND_TYPES:
            return CommandResult.rejected(
                command_id, "unknown_type", f"unknown command type {ctype!r}"
            )
        authorize(principal, ctype)
    except AuthError as exc:
        return CommandResult.rejected(command_id, exc.reason_code, exc.message)
    try:
        envelope = CommandEnvelope.model_validate(doc)
        cls = COMMAND_TYPES[envelope.type]
        payload = upcast(
            envelope.type, envelope.schema_version, cls.schema_version, envelope.payload
        )
        command = cls.model_validate(payload)
    except ValidationError as exc:
        return CommandResult.rejected(command_id, "schema_violation", _errors(exc))
    except ValueError as exc:
        return CommandResult.rejected(command_id, "schema_violation", str(exc))
    return Ready(envelope, command, principal)

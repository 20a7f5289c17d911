"""Turns the raw bytes, authorization header and topic of a command message into a ready command,
a rejection or a dead letter. Pure: no I/O. Never raises, whatever the bytes.

Order matters: nothing is answered without a command_id (dead letter); then who sent it
(unauthenticated, forbidden: answered, never remembered), the type and its topic, and only then
the content, so a rejection that is remembered always comes from a known, allowed sender.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from commands import jsonguard
from commands.base import COMMAND_ID_PATTERN, Command, CommandEnvelope
from commands.catalog import COMMAND_TOPICS, COMMAND_TYPES
from commands.upcasting import upcast
from config.settings import Settings
from domain.rbac import AuthError, Principal, authorize
from events.results import CommandResult, safe_text
from infra.auth import authenticate

log = logging.getLogger("veritas.commands")
_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str

    def __post_init__(self) -> None:  # the detail becomes a Kafka header: UTF-8, bounded
        object.__setattr__(self, "detail", safe_text(self.detail, 1000))


@dataclass(frozen=True)
class Ready:
    envelope: CommandEnvelope
    command: Command
    principal: Principal


def _loc(loc: tuple[str | int, ...]) -> str:
    return jsonguard.render_path(tuple(p if isinstance(p, int) else str(p) for p in loc))


def _errors(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    parts = [f"{_loc((*prefix, *e['loc']))}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts[:10])


def decode(
    settings: Settings,
    raw: bytes | None,
    authorization: str | None,
    topic: str | None,
    now: datetime,
) -> Ready | CommandResult | DeadLetter:
    """`topic`: the topic the message was read from; `now`: the handler's clock."""
    try:
        return _decode(settings, raw, authorization, topic, now)
    except Exception as exc:  # a bug here must not stop a partition: the message is set aside
        log.exception("decoding failed")
        return DeadLetter("decode_error", f"{type(exc).__name__}: {exc}")


def _decode(
    settings: Settings,
    raw: bytes | None,
    authorization: str | None,
    topic: str | None,
    now: datetime,
) -> Ready | CommandResult | DeadLetter:
    if not raw:
        return DeadLetter("invalid_json", "empty message")
    if len(raw) > settings.command_max_bytes:
        return DeadLetter(
            "too_large",
            f"{len(raw)} bytes, over the limit of {settings.command_max_bytes} (command_max_bytes)",
        )
    try:
        parsed = jsonguard.parse(raw)
    except jsonguard.Unparsable as exc:
        return DeadLetter(exc.reason, exc.detail)
    doc = parsed.doc
    command_id = _command_id(doc)
    if command_id is None:
        return DeadLetter("schema_violation", "envelope is not an object with a valid command_id")
    principal = _admit(settings, doc, authorization, command_id, topic)
    if isinstance(principal, CommandResult):
        return principal
    violation = jsonguard.first_violation(parsed, settings.command_max_depth)
    if violation is not None:
        return CommandResult.rejected(command_id, violation.reason, violation.message)
    return _validate(settings, doc, command_id, principal, now)


def _command_id(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    if type(doc) is jsonguard.DupKeys and "command_id" in doc.dups:
        return None  # which of its values would be the command's id?
    command_id = doc.get("command_id")
    if not isinstance(command_id, str) or not _COMMAND_ID.match(command_id):
        return None
    return command_id


def _admit(
    settings: Settings,
    doc: dict[str, Any],
    authorization: str | None,
    command_id: str,
    topic: str | None,
) -> Principal | CommandResult:
    """Who sent it, whether they may, and whether the type is known and on its own topic."""
    try:
        principal = authenticate(settings, authorization)
        ctype = doc.get("type")
        if not isinstance(ctype, str) or ctype not in COMMAND_TYPES:
            return CommandResult.rejected(
                command_id, "unknown_type", f"unknown command type {_show(ctype)}"
            )
        authorize(principal, ctype)
    except AuthError as exc:
        return CommandResult.rejected(command_id, exc.reason_code, exc.message)
    home = COMMAND_TOPICS[COMMAND_TYPES[ctype].context]
    if topic != home:
        return CommandResult.rejected(
            command_id, "wrong_topic", f"{ctype} belongs on {home}, not on {_show(topic)}"
        )
    return principal


def _show(value: object) -> str:
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _validate(
    settings: Settings,
    doc: dict[str, Any],
    command_id: str,
    principal: Principal,
    now: datetime,
) -> Ready | CommandResult:
    try:
        envelope = CommandEnvelope.model_validate(doc)
    except ValidationError as exc:
        return CommandResult.rejected(command_id, "schema_violation", _errors(exc))
    stale = _outside_window(settings, envelope.issued_at, now)
    if stale:
        return CommandResult.rejected(command_id, "schema_violation", stale)
    cls = COMMAND_TYPES[envelope.type]
    try:
        payload = upcast(
            envelope.type, envelope.schema_version, cls.schema_version, envelope.payload
        )
        command = cls.model_validate(payload)
    except ValidationError as exc:
        return CommandResult.rejected(command_id, "schema_violation", _errors(exc, ("payload",)))
    except ValueError as exc:
        return CommandResult.rejected(command_id, "schema_violation", f"schema_version: {exc}")
    return Ready(envelope, command, principal)


def _outside_window(settings: Settings, issued_at: datetime, now: datetime) -> str | None:
    ahead = (issued_at - now).total_seconds()
    if -settings.command_max_age_s <= ahead <= settings.command_max_future_s:
        return None
    if ahead > 0:
        limit = f"more than {timedelta(seconds=settings.command_max_future_s)} ahead of"
        setting = "command_max_future_s"
    else:
        limit = f"more than {timedelta(seconds=settings.command_max_age_s)} behind"
        setting = "command_max_age_s"
    return (
        f"issued_at: {issued_at.isoformat()} is {limit} the handler's clock"
        f" ({now.isoformat()}; {setting})"
    )

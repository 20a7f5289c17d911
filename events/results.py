"""The result published on events.results for every command that is not dead-lettered."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict


def safe_text(text: str, limit: int = 2000) -> str:
    """`text` cut to `limit` characters and fit for every store of it: no NUL (Postgres refuses
    it) and no lone surrogate (no UTF-8 for it), each written as a backslash escape instead."""
    text = text[:limit]
    if text.isascii() and "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


class EventRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    event_id: UUID
    aggregate_id: UUID
    version: int


class CommandResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    command_id: str
    status: Literal["accepted", "rejected"]
    reason_code: str | None = None
    sub_code: str | None = None
    message: str | None = None
    events: list[EventRef] = []

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            self.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS
        )

    @classmethod
    def rejected(
        cls, command_id: str, reason_code: str, message: str, sub_code: str | None = None
    ) -> CommandResult:
        return cls(
            command_id=command_id,
            status="rejected",
            reason_code=reason_code,
            sub_code=sub_code,
            message=safe_text(message),
        )

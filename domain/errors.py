"""Typed domain errors; each maps to one of DESIGN's reason codes."""

from __future__ import annotations


class DomainError(Exception):
    reason_code = "invariant_violation"

    def __init__(self, message: str, sub_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sub_code = sub_code


class NotFound(DomainError):
    reason_code = "not_found"


class AlreadyExists(DomainError):
    reason_code = "conflict"


class InvariantViolation(DomainError):
    reason_code = "invariant_violation"


class Forbidden(DomainError):
    reason_code = "forbidden"

"""The saga's service principal: a JWT for the `authorization` header of every command it sends,
re-issued well before it expires. The token never appears in a repr or a log."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from config.settings import Settings
from infra.auth import issue_token


class ServiceToken:
    def __init__(
        self,
        settings: Settings,
        subject: str,
        roles: Sequence[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self.subject = subject
        self.roles = list(roles)
        self._clock = clock
        self._ttl = settings.jwt_ttl_seconds
        self._header = b""
        self._renew_at = 0.0

    def header(self) -> bytes:
        """`Bearer <JWT>`, re-issued once half its lifetime has passed: a command may wait on its
        topic a while before the handler checks the token's expiry."""
        now = self._clock()
        if now >= self._renew_at:
            token = issue_token(self._settings, self.subject, self.roles, self._ttl)
            self._header = f"Bearer {token}".encode()
            self._renew_at = now + self._ttl / 2
        return self._header

    def __repr__(self) -> str:
        return f"ServiceToken(subject={self.subject!r}, roles={self.roles!r})"

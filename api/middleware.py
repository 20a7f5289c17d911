"""One pure-ASGI middleware for what every request needs: a correlation id, a per-caller rate
limit, authentication before anything parses the request, and the request counter. (Each
`@app.middleware("http")` layer wraps the request in its own task and streams, and slowapi's ASGI
middleware matched every route again per request; one plain ASGI layer costs a fraction.)"""

from __future__ import annotations

import math
import time
import uuid

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from prometheus_client import Counter
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.settings import Settings
from domain.rbac import AuthError
from infra import logs
from infra.auth import authenticate

REQUESTS = Counter("veritas_api_requests_total", "API requests", ["route", "status"])
PUBLIC_PATHS = frozenset(
    {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)


def auth_error_response(exc: AuthError) -> JSONResponse:
    code = 401 if exc.reason_code == "unauthenticated" else 403
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    return JSONResponse(
        {"detail": exc.message, "reason_code": exc.reason_code}, code, headers=headers
    )


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return "a:" + (client[0] if client else "unknown")


def _header_bytes(scope: Scope) -> int:
    return sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))


def _too_large(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"detail": message, "reason_code": code}, status)


_BODY = frozenset({"POST", "PUT", "PATCH"})


class Gate:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.rate = parse(settings.api_rate_limit)
        # Whoever has no valid token is limited by address, however often the token changes.
        self.unauthenticated_rate = parse(settings.api_unauthenticated_rate_limit)
        self.limiter = FixedWindowRateLimiter(MemoryStorage())

    def _rate_limited(self, rate: RateLimitItem, key: str) -> JSONResponse | None:
        if self.limiter.hit(rate, key):
            return None
        reset = self.limiter.get_window_stats(rate, key).reset_time
        return JSONResponse(
            {"detail": f"Rate limit exceeded: {rate}", "reason_code": "rate_limited"},
            429,
            headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))},
        )

    def _refusal(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """Why the request is refused before anyone reads it: oversized headers or body (431,
        413), no valid token (401), or its caller over the rate limit (429)."""
        limit = self.settings.api_max_header_bytes
        if (size := _header_bytes(scope)) > limit:
            return _too_large(
                431, f"request headers are {size} bytes; the limit is {limit}", "headers_too_large"
            )
        length = headers.get("content-length")
        body_limit = self.settings.command_max_bytes
        if length and length.isdigit() and int(length) > body_limit:
            return _too_large(
                413, f"request body is {length} bytes; the limit is {body_limit}", "too_large"
            )
        auth = headers.get("authorization")
        try:
            principal = (
                authenticate(self.settings, auth)
                if auth or scope["path"] not in PUBLIC_PATHS
                else None
            )
        except AuthError as exc:
            if scope["path"] not in PUBLIC_PATHS:
                return self._rate_limited(
                    self.unauthenticated_rate, _address(scope)
                ) or auth_error_response(exc)
            principal = None
        if principal is None:
            return self._rate_limited(self.unauthenticated_rate, _address(scope))
        scope.setdefault("state", {})["principal"] = principal
        return self._rate_limited(self.rate, "s:" + principal.subject)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cid = (headers.get("x-correlation-id") or str(uuid.uuid4()))[:128]
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-correlation-id", cid)
            await send(message)

        with logs.correlated(cid):
            try:
                refused = self._refusal(scope, headers)
                chunked = "content-length" not in headers and scope["method"] in _BODY
                if refused is None and chunked:
                    limit = self.settings.command_max_bytes
                    if (replay := await _buffered(receive, limit)) is None:
                        msg = f"request body is over the limit of {limit} bytes"
                        refused = _too_large(413, msg, "too_large")
                    else:
                        receive = replay
                if refused is not None:
                    await refused(scope, receive, send_with_id)
                    return
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                REQUESTS.labels(route, str(status)).inc()


async def _buffered(receive: Receive, limit: int) -> Receive | None:
    """A body without Content-Length (chunked) read whole up front, at most `limit` bytes: None
    when it is over. (Raising while the app reads it would reach the app as a parse error.)"""
    chunks, seen = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        seen += len(chunks[-1])
        if seen > limit:
            return None
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay

"""One pure-ASGI middleware for what every request needs: a correlation id, a per-caller rate
limit, authentication before anything parses the request, and the request counter. (Each
`@app.middleware("http")` layer wraps the request in its own task and streams, and slowapi's ASGI
middleware matched every route again per request; one plain ASGI layer costs a fraction.)"""

from __future__ import annotations

import hashlib
import math
import time
import uuid

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from prometheus_client import Counter
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veritas import logs
from veritas.auth import AuthError, authenticate
from veritas.settings import Settings

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


def caller_key(scope: Scope, authorization: str | None) -> str:
    """Limit per caller: the bearer token when there is one (hashed: never keep the secret),
    else the client address."""
    if authorization:
        return "t:" + hashlib.sha256(authorization.encode()).hexdigest()[:32]
    client = scope.get("client")
    return "a:" + (client[0] if client else "unknown")


class Gate:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.rate = parse(settings.api_rate_limit)
        self.limiter = FixedWindowRateLimiter(MemoryStorage())

    def _rate_limited(self, key: str) -> JSONResponse | None:
        if self.limiter.hit(self.rate, key):
            return None
        reset = self.limiter.get_window_stats(self.rate, key).reset_time
        return JSONResponse(
            {"detail": f"Rate limit exceeded: {self.rate}", "reason_code": "rate_limited"},
            429,
            headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))},
        )

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
                auth = headers.get("authorization")
                refused = self._rate_limited(caller_key(scope, auth))
                if refused is not None:
                    await refused(scope, receive, send_with_id)
                    return
                if scope["path"] not in PUBLIC_PATHS:
                    try:
                        principal = authenticate(self.settings, auth)
                    except AuthError as exc:
                        await auth_error_response(exc)(scope, receive, send_with_id)
                        return
                    scope.setdefault("state", {})["principal"] = principal
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                REQUESTS.labels(route, str(status)).inc()

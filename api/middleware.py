"""One pure-ASGI middleware for what every request needs: a correlation id, authentication
before anything parses the request, and the request counter. (Each `@app.middleware("http")`
layer wraps the request in its own task and streams; one plain ASGI layer costs a fraction.)"""

from __future__ import annotations

import uuid

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


class Gate:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

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
                if scope["path"] not in PUBLIC_PATHS:
                    try:
                        principal = authenticate(self.settings, headers.get("authorization"))
                    except AuthError as exc:
                        await auth_error_response(exc)(scope, receive, send_with_id)
                        return
                    scope.setdefault("state", {})["principal"] = principal
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                REQUESTS.labels(route, str(status)).inc()

"""The OpenAPI document states the API's authentication: a bearer JWT on every route but the
probes, and the 401 / 403 / 429 answers the gate gives before a route runs. (Written into the
document rather than declared with a FastAPI Security dependency: the Gate already authenticates,
and a dependency would be solved again on every request.)"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.middleware import PUBLIC_PATHS

SCHEME = "bearerAuth"
_REFUSALS = {
    "401": "No valid bearer token (reason_code: unauthenticated)",
    "403": "The token's roles do not allow this (reason_code: forbidden)",
    "429": "Rate limit exceeded for this caller (reason_code: rate_limited; see Retry-After)",
}


def _refusal(description: str) -> dict[str, Any]:
    body = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
    return {"description": description, "content": {"application/json": body}}


def document_auth(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = doc.setdefault("components", {})
            components.setdefault("securitySchemes", {})[SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
            }
            for path, operations in doc.get("paths", {}).items():
                if path in PUBLIC_PATHS:
                    continue
                for op in operations.values():
                    op["security"] = [{SCHEME: []}]
                    for code, text in _REFUSALS.items():
                        op.setdefault("responses", {}).setdefault(code, _refusal(text))
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""JWT authentication: HS256 with a shared secret by default, RS256 with a public key. Turns an
`authorization: Bearer <JWT>` header into a Principal (domain.rbac) or an AuthError."""

from __future__ import annotations

import functools
import time
from typing import Any

import jwt

from config.settings import Settings
from domain.rbac import AuthError, Principal, Role


def issue_token(
    settings: Settings, subject: str, roles: list[str], ttl_s: int | None = None
) -> str:
    unknown = set(roles) - {r.value for r in Role}
    if unknown:
        raise ValueError(f"unknown role(s): {', '.join(sorted(unknown))}")
    now = int(time.time())
    claims = {
        "sub": subject,
        "roles": roles,
        "iat": now,
        "exp": now + (ttl_s or settings.jwt_ttl_seconds),
    }
    if settings.jwt_algorithm == "RS256":
        if settings.jwt_private_key is None:
            raise ValueError("RS256 needs VERITAS_JWT_PRIVATE_KEY to issue tokens")
        return jwt.encode(claims, settings.jwt_private_key.get_secret_value(), algorithm="RS256")
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def authenticate(settings: Settings, authorization: str | None) -> Principal:
    if not authorization:
        raise AuthError("unauthenticated", "missing authorization (expected 'Bearer <JWT>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("unauthenticated", "authorization must be 'Bearer <JWT>'")
    alg = settings.jwt_algorithm
    if alg == "RS256" and not settings.jwt_public_key:
        raise AuthError(
            "unauthenticated", "server misconfigured: RS256 without VERITAS_JWT_PUBLIC_KEY"
        )
    key = (
        settings.jwt_public_key or "" if alg == "RS256" else settings.jwt_secret.get_secret_value()
    )
    try:
        claims = _decode(token.strip(), key, alg)
        if claims["exp"] <= time.time():
            raise jwt.ExpiredSignatureError
    except jwt.ExpiredSignatureError:
        raise AuthError("unauthenticated", "token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError("unauthenticated", f"invalid token: {type(exc).__name__}") from None
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not isinstance(claims["sub"], str) or not claims["sub"]:
        raise AuthError("unauthenticated", "token claims 'sub' and 'roles' are malformed")
    return Principal(
        claims["sub"], frozenset(Role(r) for r in roles if r in Role.__members__.values())
    )


@functools.lru_cache(maxsize=4096)
def _decode(token: str, key: str, alg: str) -> dict[str, Any]:
    # A batch usually carries the same token many times: verify its signature once. Expiry is
    # re-checked by the caller on every use, so a cached token still expires on time.
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=[alg], options={"require": ["sub", "exp"]}
    )
    return claims

"""API edge behaviour that needs no database: rate limiting per caller, and authentication before
anything else reads a request."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from veritas.auth import issue_token
from veritas.bootstrap import bootstrap
from veritas.settings import Settings


def _client(limit: str = "1000/second") -> tuple[TestClient, Settings]:
    s = Settings(api_rate_limit=limit)
    return TestClient(create_app(bootstrap(s))), s


def test_each_caller_is_rate_limited_separately() -> None:
    client, s = _client("3/minute")
    alice = {"authorization": f"Bearer {issue_token(s, 'alice', ['data_scientist'])}"}
    bob = {"authorization": f"Bearer {issue_token(s, 'bob', ['data_scientist'])}"}
    codes = [client.get("/health", headers=alice).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    assert client.get("/health", headers=bob).status_code == 200  # another caller is unaffected
    refused = client.get("/health", headers=alice)
    assert "Rate limit exceeded: 3 per 1 minute" in refused.text
    assert refused.json()["reason_code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-correlation-id"]


def test_unauthenticated_requests_get_401_before_validation() -> None:
    client, _ = _client()
    r = client.post("/commands", content=b"{not json")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/models", headers={"authorization": "Bearer nope"}).status_code == 401
    assert client.get("/openapi.json").status_code == 200


def test_forbidden_role_gets_403_with_a_reason() -> None:
    client, s = _client()
    auditor = {"authorization": f"Bearer {issue_token(s, 'audrey', ['auditor'])}"}
    r = client.post("/commands", json={"type": "RegisterModel", "payload": {}}, headers=auditor)
    assert r.status_code == 403
    assert r.json()["reason_code"] == "forbidden"


def test_openapi_declares_the_bearer_token_and_the_gate_refusals() -> None:
    client, _ = _client()
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    ops = {(path, m): op for path, item in doc["paths"].items() for m, op in item.items()}
    probes = {k for k in ops if k[0] in ("/health", "/ready", "/metrics")}
    protected = ops.keys() - probes
    assert {("/models/{name}", "get"), ("/commands", "post"), ("/audit/verify", "get")} <= protected
    assert len(probes) == 3
    for k in protected:
        assert ops[k]["security"] == [{"bearerAuth": []}], k
        assert {"401", "403", "429"} <= ops[k]["responses"].keys(), k
    for k in probes:
        assert "security" not in ops[k], k
    # What the document promises is what a route without a token gets.
    refused = client.get("/models/x")
    assert refused.status_code == 401 and refused.json()["reason_code"] == "unauthenticated"
    assert client.get("/openapi.json").json() == doc  # built once, served the same

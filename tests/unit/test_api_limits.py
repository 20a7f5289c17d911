"""API edge behaviour that needs no database: rate limiting per caller, and authentication before
anything else reads a request."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from config.settings import Settings
from infra.auth import issue_token
from veritas.bootstrap import bootstrap


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


def test_oversized_headers_get_431_with_the_limit() -> None:
    client, s = _client()
    r = client.get("/health", headers={"x-big": "a" * 60_000})
    assert r.status_code == 431
    assert str(s.api_max_header_bytes) in r.json()["detail"]
    assert r.json()["reason_code"] == "headers_too_large"


def test_a_body_over_the_command_limit_gets_413_with_the_limit() -> None:
    client, s = _client()
    alice = {"authorization": f"Bearer {issue_token(s, 'alice', ['data_scientist'])}"}
    big = {"type": "RegisterModel", "payload": {"description": "x" * 300_000}}
    r = client.post("/commands", json=big, headers=alice)
    assert r.status_code == 413
    assert str(s.command_max_bytes) in r.json()["detail"]

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"type":"RegisterModel","payload":{"d":"'
        for _ in range(40):
            yield b"x" * 10_000
        yield b'"}}'

    chunked = client.post("/commands", content=chunks(), headers=alice)  # no Content-Length
    assert chunked.status_code == 413


def test_unauthenticated_callers_are_limited_by_address_whatever_token_they_send() -> None:
    s = Settings(api_unauthenticated_rate_limit="5/minute")
    client = TestClient(create_app(bootstrap(s)))
    codes = [
        client.get("/models", headers={"authorization": f"Bearer garbage-{i}"}).status_code
        for i in range(8)
    ]
    assert codes == [401] * 5 + [429] * 3
    valid = {"authorization": f"Bearer {issue_token(s, 'alice', ['data_scientist'])}"}
    assert client.get("/health", headers=valid).status_code == 200  # a real caller is not


def test_only_event_topics_or_audit_copies_can_be_verified() -> None:
    client, s = _client()
    auditor = {"authorization": f"Bearer {issue_token(s, 'audrey', ['auditor'])}"}
    for topic in ("__consumer_offsets", "commands.dlq", "audit.copy."):
        r = client.get(
            "/audit/verify", params={"source": "topics", "topic": topic}, headers=auditor
        )
        assert r.status_code == 422, topic
        assert "only event topics" in r.json()["detail"]

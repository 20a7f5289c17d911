"""Read side on the real stack: queries, point-in-time, read-your-writes, auth on every route."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api import schemas
from config.settings import Settings
from tests.helpers import token


def _cmd(api: httpx.Client, tok: str, ctype: str, payload: dict[str, Any]) -> dict[str, Any]:
    r = api.post(
        "/commands",
        params={"wait": "true"},
        json={"type": ctype, "payload": payload},
        headers={"authorization": f"Bearer {tok}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def api(stack: Settings) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=30)


@pytest.fixture(scope="module")
def promoted(stack: Settings, api: httpx.Client) -> dict[str, Any]:
    """A model whose 1.0.0 went to production with two approvals, then 1.1.0 replaced it."""
    ds, olga = token(stack, "alice", "data_scientist"), token(stack, "olga", "ml_engineer")
    bob, carol = token(stack, "bob", "approver"), token(stack, "carol", "approver")
    name = f"rs-{uuid.uuid4().hex[:8]}"
    marks: dict[str, Any] = {"name": name, "created": datetime.now(UTC)}
    time.sleep(0.01)
    assert (
        _cmd(
            api,
            ds,
            "RegisterModel",
            {
                "name": name,
                "description": "fraud scorer",
                "intended_use": "u",
                "limitations": "l",
                "tags": {"team": "risk"},
            },
        )["status"]
        == "accepted"
    )
    for v in ("1.0.0", "1.1.0"):
        art = {
            "uri": f"file://{name}/{v}",
            "sha256": hashlib.sha256(v.encode()).hexdigest(),
            "signature": "s",
        }
        lineage = {"parent_version": "1.0.0"} if v == "1.1.0" else {}
        assert (
            _cmd(
                api,
                ds,
                "RegisterModelVersion",
                {
                    "model_name": name,
                    "version": v,
                    "artifact": art,
                    "lineage": lineage,
                    "metrics": {"auc": 0.9},
                },
            )["status"]
            == "accepted"
        )
        sub = _cmd(
            api,
            ds,
            "SubmitForApproval",
            {
                "model_name": name,
                "version": v,
                "target_stage": "production",
                "justification": "better",
            },
        )
        sid = sub["events"][0]["aggregate_id"]
        _cmd(api, bob, "ApproveSubmission", {"submission_id": sid})
        _cmd(api, carol, "ApproveSubmission", {"submission_id": sid})
        marks[f"before_{v}"] = datetime.now(UTC)
        time.sleep(0.01)
        assert (
            _cmd(
                api,
                olga,
                "TransitionStage",
                {"model_name": name, "version": v, "stage": "production"},
            )["status"]
            == "accepted"
        )
        time.sleep(0.01)
        marks[f"after_{v}"] = datetime.now(UTC)
    marks["token"] = ds
    return marks


def test_read_your_writes_and_current_state(api: httpx.Client, promoted: dict[str, Any]) -> None:
    hdr = {"authorization": f"Bearer {promoted['token']}"}
    body = api.get(f"/models/{promoted['name']}", headers=hdr).json()
    # Postgres renders this body: it must be exactly the documented ModelDetail, no more.
    assert set(body) == set(schemas.ModelDetail.model_fields)
    assert all(set(v) == set(schemas.VersionSummary.model_fields) for v in body["versions"])
    detail = schemas.ModelDetail.model_validate(body)
    assert detail.as_of is None and detail.created_at.tzinfo is not None
    assert body["production_version"] == "1.1.0"
    assert body["version_count"] == 2
    assert {v["version"]: v["stage"] for v in body["versions"]} == {
        "1.0.0": "archived",
        "1.1.0": "production",
    }
    v = api.get(f"/models/{promoted['name']}/versions/1.0.0", headers=hdr).json()
    assert [h["to_stage"] for h in v["stage_history"]] == ["production", "archived"]
    assert sorted(a for ap in v["approvals"] for a in ap["approvers"]) == ["bob", "carol"]
    lineage = api.get(f"/models/{promoted['name']}/versions/1.1.0/lineage", headers=hdr).json()
    assert lineage["ancestors"] == ["1.0.0"]


def test_point_in_time_answers(api: httpx.Client, promoted: dict[str, Any]) -> None:
    hdr, name = {"authorization": f"Bearer {promoted['token']}"}, promoted["name"]

    def at(key: str) -> httpx.Response:
        return api.get(f"/models/{name}", params={"as_of": promoted[key].isoformat()}, headers=hdr)

    assert (
        api.get(
            f"/models/{name}", params={"as_of": "2001-01-01T00:00:00Z"}, headers=hdr
        ).status_code
        == 404
    )
    before = at("before_1.0.0").json()
    assert before["production_version"] is None
    assert before["versions"][0]["approvals"][0]["approvers"] == [
        "bob",
        "carol",
    ]  # approved, not promoted
    mid = at("after_1.0.0").json()
    assert mid["production_version"] == "1.0.0" and mid["version_count"] == 1
    end = at("after_1.1.0").json()
    assert end["production_version"] == "1.1.0"
    assert {v["version"]: v["stage"] for v in end["versions"]} == {
        "1.0.0": "archived",
        "1.1.0": "production",
    }
    assert api.get(f"/models/{name}", params={"as_of": "yesterday"}, headers=hdr).status_code == 422


def test_filters_pagination_and_errors(
    api: httpx.Client, promoted: dict[str, Any], stack: Settings
) -> None:
    hdr = {"authorization": f"Bearer {promoted['token']}"}
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(5)]
    for n in names:
        assert (
            _cmd(
                api,
                promoted["token"],
                "RegisterModel",
                {"name": n, "description": "d", "intended_use": "u", "limitations": "l"},
            )["status"]
            == "accepted"
        )
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 2, "owner": "alice", "q": prefix}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/models", params=params, headers=hdr).json()
        seen += [m["name"] for m in page["items"]]
        cursor, pages = page["next_cursor"], pages + 1
        if not cursor or pages > 10:
            break
    assert seen == names and pages == 3  # stable cursor pages: 2 + 2 + 1, no gap, no repeat
    prod = api.get(
        "/models", params={"stage": "production", "q": promoted["name"]}, headers=hdr
    ).json()
    assert [m["name"] for m in prod["items"]] == [promoted["name"]]
    assert api.get("/models/no-such-model", headers=hdr).status_code == 404
    assert api.get("/models", params={"limit": 0}, headers=hdr).status_code == 422
    assert api.get("/models", params={"cursor": "!!"}, headers=hdr).status_code == 422
    queue = api.get("/governance/submissions", params={"awaiting": "bob"}, headers=hdr).json()
    assert all(s["status"] == "pending" and s["submitted_by"] != "bob" for s in queue["items"])


READ_ROUTES = [
    "/models",
    "/models/x",
    "/models/x/versions/1.0.0",
    "/models/x/versions/1.0.0/lineage",
    "/datasets",
    "/governance/submissions",
    "/commands/abc",
]


@pytest.mark.parametrize(
    "path", [*READ_ROUTES, "/audit/verify", f"/audit/RegisteredModel/{uuid.uuid4()}", "/keys"]
)
def test_every_route_needs_a_token(stack: Settings, path: str) -> None:
    # Unauthenticated traffic is rate-limited by address, and the shared stack has just had
    # other tests' unauthenticated requests from 127.0.0.1: this one comes from its own address.
    own = httpx.HTTPTransport(local_address="127.0.0.7")
    with httpx.Client(base_url=stack.api_url, timeout=30, transport=own) as api:
        assert api.get(path).status_code == 401
        forged = {"authorization": "Bearer forged.token.value"}
        assert api.get(path, headers=forged).status_code == 401


def test_audit_needs_the_auditor_role(api: httpx.Client, stack: Settings) -> None:
    ds, auditor = token(stack, "alice", "data_scientist"), token(stack, "audrey", "auditor")
    assert api.get("/audit/verify", headers={"authorization": f"Bearer {ds}"}).status_code == 403
    r = api.get(
        "/audit/verify", params={"source": "store"}, headers={"authorization": f"Bearer {auditor}"}
    )
    assert r.status_code == 200 and r.json()["valid"] is True and r.json()["events"] > 0
    assert (
        api.post(
            "/commands",
            json={"type": "RegisterModel", "payload": {}},
            headers={"authorization": f"Bearer {auditor}"},
        ).status_code
        == 403
    )

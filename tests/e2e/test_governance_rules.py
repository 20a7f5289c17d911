"""Each governance rule of seed 004, through the real stack (Kafka, handler, Postgres, projector,
API): self-approval, one approver for production, approval after rejection, promotion without
approval, a second production version, and rollback."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest

from config.settings import Settings
from tests.helpers import token


class Actor:
    def __init__(self, api: httpx.Client, tok: str) -> None:
        self.api, self.hdr = api, {"authorization": f"Bearer {tok}"}

    def send(self, ctype: str, **payload: Any) -> dict[str, Any]:
        r = self.api.post(
            "/commands",
            params={"wait": "true"},
            json={"type": ctype, "payload": payload},
            headers=self.hdr,
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return dict(self.api.get(path, params=params, headers=self.hdr).json())


@pytest.fixture(scope="module")
def people(stack: Settings) -> dict[str, Actor]:
    api = httpx.Client(base_url=stack.api_url, timeout=30)
    roles = {
        "dave": ["data_scientist", "approver"],
        "bob": ["approver"],
        "carol": ["approver"],
        "olga": ["ml_engineer"],
    }
    return {who: Actor(api, token(stack, who, *r)) for who, r in roles.items()}


def _model_with_versions(p: dict[str, Actor], *versions: str) -> str:
    name = f"gov-{uuid.uuid4().hex[:8]}"
    assert (
        p["dave"].send(
            "RegisterModel", name=name, description="d", intended_use="u", limitations="l"
        )["status"]
        == "accepted"
    )
    for v in versions:
        art = {
            "uri": f"file://{name}/{v}",
            "sha256": hashlib.sha256(v.encode()).hexdigest(),
            "signature": "s",
        }
        assert (
            p["dave"].send("RegisterModelVersion", model_name=name, version=v, artifact=art)[
                "status"
            ]
            == "accepted"
        )
    return name


def _submit(p: dict[str, Actor], name: str, version: str) -> str:
    r = p["dave"].send(
        "SubmitForApproval",
        model_name=name,
        version=version,
        target_stage="production",
        justification="ready",
    )
    assert r["status"] == "accepted"
    return str(r["events"][0]["aggregate_id"])


def _approved_to_production(p: dict[str, Actor], name: str, version: str) -> None:
    sid = _submit(p, name, version)
    assert p["bob"].send("ApproveSubmission", submission_id=sid)["status"] == "accepted"
    assert p["carol"].send("ApproveSubmission", submission_id=sid)["status"] == "accepted"
    assert (
        p["olga"].send("TransitionStage", model_name=name, version=version, stage="production")[
            "status"
        ]
        == "accepted"
    )


def test_no_one_approves_their_own_submission(people: dict[str, Actor]) -> None:
    name = _model_with_versions(people, "1.0.0")
    sid = _submit(people, name, "1.0.0")
    r = people["dave"].send("ApproveSubmission", submission_id=sid)
    assert (r["status"], r["reason_code"], r["sub_code"]) == (
        "rejected",
        "invariant_violation",
        "self_approval",
    )
    sub = people["bob"].get("/governance/submissions", model_name=name)["items"][0]
    assert sub["status"] == "pending" and sub["approvers"] == []


def test_production_needs_two_distinct_approvers(people: dict[str, Actor]) -> None:
    name = _model_with_versions(people, "1.0.0")
    sid = _submit(people, name, "1.0.0")
    assert people["bob"].send("ApproveSubmission", submission_id=sid)["status"] == "accepted"
    again = people["bob"].send("ApproveSubmission", submission_id=sid)
    assert again["sub_code"] == "duplicate_approver"
    early = people["olga"].send(
        "TransitionStage", model_name=name, version="1.0.0", stage="production"
    )
    assert early["sub_code"] == "approval_required"
    assert (
        people["bob"].get("/governance/submissions", model_name=name)["items"][0]["status"]
        == "pending"
    )
    assert people["carol"].send("ApproveSubmission", submission_id=sid)["status"] == "accepted"
    assert (
        people["bob"].get("/governance/submissions", model_name=name)["items"][0]["status"]
        == "approved"
    )
    assert (
        people["olga"].send(
            "TransitionStage", model_name=name, version="1.0.0", stage="production"
        )["status"]
        == "accepted"
    )


def test_a_decision_is_final(people: dict[str, Actor]) -> None:
    name = _model_with_versions(people, "1.0.0")
    sid = _submit(people, name, "1.0.0")
    assert (
        people["bob"].send("RejectSubmission", submission_id=sid, reason="no eval report")["status"]
        == "accepted"
    )
    late = people["carol"].send("ApproveSubmission", submission_id=sid)
    assert (late["reason_code"], late["sub_code"]) == ("invariant_violation", "decision_final")
    sub = people["bob"].get("/governance/submissions", model_name=name)["items"][0]
    assert (sub["status"], sub["reason"]) == ("rejected", "no eval report")


def test_promotion_without_approval_is_refused(people: dict[str, Actor]) -> None:
    name = _model_with_versions(people, "1.0.0")
    r = people["olga"].send("TransitionStage", model_name=name, version="1.0.0", stage="production")
    assert (r["reason_code"], r["sub_code"]) == ("invariant_violation", "approval_required")
    assert people["olga"].get(f"/models/{name}")["production_version"] is None


def test_a_second_production_version_archives_the_first_and_rollback_restores_it(
    people: dict[str, Actor],
) -> None:
    name = _model_with_versions(people, "1.0.0", "2.0.0")
    _approved_to_production(people, name, "1.0.0")
    _approved_to_production(people, name, "2.0.0")
    model = people["olga"].get(f"/models/{name}")
    assert model["production_version"] == "2.0.0"
    assert {v["version"]: v["stage"] for v in model["versions"]} == {
        "1.0.0": "archived",
        "2.0.0": "production",
    }
    archived = people["olga"].send(
        "TransitionStage", model_name=name, version="1.0.0", stage="production"
    )
    assert archived["sub_code"] == "archived_version"
    rb = people["olga"].send("RollbackProduction", model_name=name, reason="latency regression")
    assert rb["status"] == "accepted"
    model = people["olga"].get(f"/models/{name}")
    assert model["production_version"] == "1.0.0"
    assert {v["version"]: v["stage"] for v in model["versions"]} == {
        "1.0.0": "production",
        "2.0.0": "archived",
    }
    again = people["olga"].send("RollbackProduction", model_name=name, reason="again")
    assert again["sub_code"] == "no_previous_production"

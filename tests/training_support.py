"""Helpers for the training saga's tests on the real stack: start runs through the API, wait for
their end in the read model, and read their event streams from the event store."""

from __future__ import annotations

import time
import uuid
from typing import Any
from uuid import UUID

import httpx

from config.settings import Settings
from events.envelope import EventEnvelope
from tests.helpers import token
from veritas.bootstrap import bootstrap

ENDED = ("completed", "failed", "cancelled")


def api(s: Settings, *roles: str, subject: str = "tina") -> httpx.Client:
    tok = token(s, subject, *(roles or ("data_scientist",)))
    return httpx.Client(base_url=s.api_url, headers={"authorization": f"Bearer {tok}"}, timeout=60)


def command(client: httpx.Client, ctype: str, payload: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/commands", params={"wait": "true"}, json={"type": ctype, "payload": payload})
    assert r.status_code in (200, 202), r.text
    body: dict[str, Any] = r.json()
    return body


def model(client: httpx.Client, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    body = command(
        client,
        "RegisterModel",
        {"name": name, "description": "d", "intended_use": "u", "limitations": "l"},
    )
    assert body["status"] == "accepted", body
    return name


def start(client: httpx.Client, name: str, **payload: Any) -> str:
    body = command(
        client,
        "StartTraining",
        {
            "model_name": name,
            "dataset_uri": payload.pop("dataset_uri", "sklearn:digits"),
            **payload,
        },
    )
    assert body["status"] == "accepted", body
    return str(body["events"][0]["aggregate_id"])


def wait_run(
    client: httpx.Client, run_id: str, until: tuple[str, ...] = ENDED, timeout_s: float = 420
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"/training/runs/{run_id}")
        if r.status_code == 200:
            run = r.json()
            if run["status"] in until:
                return run
        time.sleep(0.5)
    raise AssertionError(
        f"run {run_id} did not reach {until}: {run.get('status')} {run.get('error')}"
    )


def stream(s: Settings, run_id: str) -> list[EventEnvelope]:
    c = bootstrap(s)
    try:
        return c.store.load(UUID(run_id))
    finally:
        c.close()


def types(events: list[EventEnvelope]) -> list[str]:
    return [e.type for e in events]


def steps_of(events: list[EventEnvelope], etype: str, kind: str = "run") -> list[str]:
    return [e.payload["step"] for e in events if e.type == etype and e.payload["kind"] == kind]

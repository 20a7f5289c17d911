"""Drives commands.service.process_batch over an InMemoryEventStore, the way the command handler
worker does with messages from Kafka: raw envelope bytes plus a `Bearer <JWT>` header."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import SecretStr

from commands.catalog import COMMAND_TYPES, topic_for
from commands.decoding import DeadLetter
from commands.service import Incoming, Outcome, process_batch
from config.settings import Settings
from domain.governance import submission_id_for
from domain.registry import dataset_id, model_id, version_id
from events.envelope import EventEnvelope, verify_chain
from events.results import CommandResult
from infra.auth import issue_token
from infra.event_keys import EventSigner
from infra.memory_store import InMemoryEventStore
from infra.postgres.eventstore import EventStore
from infra.signed_store import SigningEventStore
from ml import signing

# Events are signed as bootstrap's store signs them, by a key configured in Settings.
SIGNING_KEY = signing.private_key_to_pem(signing.generate_private_key()).decode()
SETTINGS = Settings(
    jwt_secret="unit-test-secret-0123456789-abcdefghijklmnop",
    signing_private_key=SecretStr(SIGNING_KEY),
)
SHA_A, SHA_B = "a" * 64, "b" * 64

# Who is who in the scenarios. Alice also holds `approver`, so self-approval reaches the domain.
USERS: dict[str, list[str]] = {
    "alice": ["data_scientist", "approver"],
    "bob": ["approver"],
    "carol": ["approver"],
    "dave": ["approver"],
    "erin": ["ml_engineer"],
}


@dataclass
class Harness:
    store: EventStore = field(default_factory=InMemoryEventStore)
    settings: Settings = SETTINGS
    now: datetime = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    _tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.store, SigningEventStore):
            self.store = SigningEventStore(self.store, EventSigner(self.settings))

    def clock(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def token(self, user: str) -> str:
        if user not in self._tokens:
            self._tokens[user] = issue_token(self.settings, user, USERS[user])
        return self._tokens[user]

    def msg(
        self,
        user: str,
        ctype: str,
        payload: dict[str, Any],
        command_id: str | None = None,
        schema_version: int | None = None,
    ) -> Incoming:
        """The message a client sends now (by the harness's clock), to the type's own topic."""
        env = {
            "command_id": command_id or f"cmd-{uuid.uuid4()}",
            "type": ctype,
            "schema_version": schema_version or COMMAND_TYPES[ctype].schema_version,
            "issued_at": self.now.isoformat(),
            "payload": payload,
        }
        return Incoming(json.dumps(env).encode(), f"Bearer {self.token(user)}", topic_for(ctype))

    def batch(self, *items: Incoming) -> list[Outcome]:
        return process_batch(
            list(items), store=self.store, settings=self.settings, clock=self.clock
        )

    def send(
        self,
        user: str,
        ctype: str,
        payload: dict[str, Any],
        command_id: str | None = None,
        schema_version: int | None = None,
    ) -> CommandResult:
        (out,) = self.batch(self.msg(user, ctype, payload, command_id, schema_version))
        assert isinstance(out, CommandResult), out
        return out

    def ok(
        self, user: str, ctype: str, payload: dict[str, Any], command_id: str | None = None
    ) -> CommandResult:
        res = self.send(user, ctype, payload, command_id)
        assert res.status == "accepted", (
            f"{ctype} rejected: {res.reason_code}/{res.sub_code}: {res.message}"
        )
        return res

    # --- reading the store back ---

    def log(self) -> list[EventEnvelope]:
        """Every stored event, in commit order."""
        return [EventEnvelope.from_bytes(n.state) for n in self.store.notifications(0, 1_000_000)]

    def events_of(
        self, result: CommandResult | DeadLetter
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(aggregate_type, event type, payload) of each event a result refers to, in order."""
        assert isinstance(result, CommandResult)
        out = []
        for ref in result.events:
            (env,) = [e for e in self.store.load(ref.aggregate_id) if e.version == ref.version]
            assert env.event_id == ref.event_id
            out.append((env.aggregate_type, env.type, env.payload))
        return out

    def types_of(self, result: CommandResult | DeadLetter) -> list[str]:
        return [t for _, t, _ in self.events_of(result)]

    def grouped(
        self, result: CommandResult | DeadLetter
    ) -> dict[UUID, list[tuple[str, dict[str, Any]]]]:
        """The events a result refers to, per aggregate, each list in version order. (Across
        aggregates the order of a result's events is not part of the contract.)"""
        assert isinstance(result, CommandResult)
        out: dict[UUID, list[tuple[str, dict[str, Any]]]] = {}
        for ref, (_, etype, payload) in zip(result.events, self.events_of(result), strict=True):
            out.setdefault(ref.aggregate_id, []).append((etype, payload))
        return out

    def type_groups(self, result: CommandResult | DeadLetter) -> dict[UUID, list[str]]:
        return {a: [t for t, _ in evs] for a, evs in self.grouped(result).items()}

    def stream(self, aggregate_id: UUID) -> list[EventEnvelope]:
        envs = self.store.load(aggregate_id)
        assert verify_chain(envs) is None
        return envs

    # --- scenario steps ---

    def register_model(self, name: str = "fraud", user: str = "alice") -> CommandResult:
        return self.ok(
            user,
            "RegisterModel",
            {
                "name": name,
                "description": "Fraud scorer",
                "intended_use": "card fraud",
                "limitations": "EU only",
            },
        )

    def register_dataset(
        self, name: str = "txns", version: str = "1.0.0", checksum: str = SHA_A
    ) -> CommandResult:
        return self.ok(
            "alice",
            "RegisterDataset",
            {
                "name": name,
                "version": version,
                "uri": f"s3://data/{name}/{version}",
                "checksum": checksum,
            },
        )

    def version_payload(
        self, model: str = "fraud", version: str = "1.0.0", **lineage: Any
    ) -> dict[str, Any]:
        return {
            "model_name": model,
            "version": version,
            "artifact": {
                "uri": f"s3://models/{model}/{version}",
                "sha256": SHA_B,
                "signature": "sig",
            },
            "lineage": lineage,
            "metrics": {"auc": 0.91},
        }

    def register_version(self, version: str = "1.0.0", model: str = "fraud") -> CommandResult:
        return self.ok("alice", "RegisterModelVersion", self.version_payload(model, version))

    def submit(
        self,
        version: str = "1.0.0",
        stage: str = "production",
        user: str = "alice",
        model: str = "fraud",
    ) -> UUID:
        cid = f"submit-{uuid.uuid4()}"
        self.ok(
            user,
            "SubmitForApproval",
            {
                "model_name": model,
                "version": version,
                "target_stage": stage,
                "justification": "beats the baseline",
            },
            command_id=cid,
        )
        return submission_id_for(cid)

    def approve(self, sub: UUID, user: str) -> CommandResult:
        return self.send(user, "ApproveSubmission", {"submission_id": str(sub), "comments": "lgtm"})

    def reject(self, sub: UUID, user: str) -> CommandResult:
        return self.send(
            user, "RejectSubmission", {"submission_id": str(sub), "reason": "not convincing"}
        )

    def transition(self, version: str, stage: str, model: str = "fraud") -> CommandResult:
        return self.send(
            "erin", "TransitionStage", {"model_name": model, "version": version, "stage": stage}
        )

    def approved_for_production(self, version: str, model: str = "fraud") -> None:
        sub = self.submit(version, model=model)
        assert self.approve(sub, "bob").status == "accepted"
        assert self.approve(sub, "carol").status == "accepted"

    def promote(self, version: str, model: str = "fraud") -> CommandResult:
        self.approved_for_production(version, model)
        res = self.transition(version, "production", model)
        assert res.status == "accepted", res
        return res


def assert_rejected(
    res: CommandResult | DeadLetter, reason: str, sub_code: str | None = None
) -> None:
    assert isinstance(res, CommandResult), res
    assert res.status == "rejected", res
    assert res.reason_code == reason, res
    if sub_code is not None:
        assert res.sub_code == sub_code, res
    assert res.message
    assert res.events == []


__all__ = ["SHA_A", "SHA_B", "Harness", "assert_rejected", "dataset_id", "model_id", "version_id"]

"""The writer follows a rotation made by another process; readers learn the new key at once and
the old key's retirement soon after; no private key is ever printed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from config.settings import Settings
from events.envelope import ENVELOPE_VERSION, GENESIS_HASH, EventEnvelope, read_published, seal
from events.signatures import NoLegacy, check_event
from infra import event_keys, keys
from infra.event_keys import EventSigner, PublishedKeys


def env(at: datetime) -> EventEnvelope:
    return seal(
        {
            "event_id": uuid4(),
            "type": "ModelRegistered",
            "schema_version": 1,
            "aggregate_type": "Model",
            "aggregate_id": uuid4(),
            "version": 1,
            "occurred_at": at,
            "actor": "alice",
            "correlation_id": "c",
            "causation_id": "c",
            "payload": {},
            "prev_hash": GENESIS_HASH,
            "envelope_version": ENVELOPE_VERSION,
        }
    )


def test_rotation_is_followed_by_writer_and_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(var_dir=tmp_path)
    keys.ensure_dev_key(s)
    writer, other_writer, reader = EventSigner(s), EventSigner(s), PublishedKeys(s)
    before = datetime.now(UTC) - timedelta(seconds=1)
    (old,) = writer.sign_all([env(before)])
    assert check_event(read_published(old.to_bytes()), reader, NoLegacy()) is None

    old_id, new_id = keys.rotate(s)
    assert old.key_id == old_id != new_id
    (new,) = writer.sign_all([env(datetime.now(UTC))])
    assert new.key_id == new_id  # the writer reloaded the active key
    assert check_event(read_published(new.to_bytes()), reader, NoLegacy()) is None  # at once

    # A writer still holding the retired key (it has not committed since): its late event is
    # refused once readers have looked again, while what it signed before stays valid.
    monkeypatch.setattr(event_keys, "RELOAD_AFTER_S", 0.0)
    late = other_writer.sign(env(datetime.now(UTC) + timedelta(seconds=1)))
    assert late.key_id == old_id
    assert check_event(read_published(late.to_bytes()), reader, NoLegacy()) == "retired_key"
    assert check_event(read_published(old.to_bytes()), reader, NoLegacy()) is None


def test_no_private_key_in_any_representation(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path)
    keys.ensure_dev_key(s)
    pem = (s.keys_dir / keys.ACTIVE_FILE).read_text()
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    ring = keys.load(s)
    shown = [repr(ring), str(ring.published()), repr(EventSigner(s).__dict__)]
    shown += [str(k.published()) for k in keys.public_keys(s)]
    assert body and not any(body in text for text in shown)

"""The signed anchor of unsigned (v1) history: written once, believed only while it verifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from config.settings import Settings
from events.envelope import GENESIS_HASH, EventEnvelope, seal
from infra import anchors, keys
from infra.event_keys import PublishedKeys
from infra.memory_store import InMemoryEventStore


def v1(version: int, prev: str, agg: object) -> EventEnvelope:
    return seal(
        {
            "event_id": uuid4(),
            "type": "ModelRegistered",
            "schema_version": 1,
            "aggregate_type": "Model",
            "aggregate_id": agg,
            "version": version,
            "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
            "actor": "alice",
            "correlation_id": "c",
            "causation_id": "c",
            "payload": {"n": version},
            "prev_hash": prev,
        }
    )


def test_unsigned_history_is_anchored_once_and_only_while_the_anchor_verifies(
    tmp_path: Path,
) -> None:
    s = Settings(var_dir=tmp_path)
    keys.ensure_dev_key(s)
    store = InMemoryEventStore()
    agg = uuid4()
    first = v1(1, GENESIS_HASH, agg)
    second = v1(2, first.hash, agg)
    store.commit([("registry", first), ("registry", second)], [])
    assert anchors.ensure_anchor(s, store) == 1
    assert anchors.ensure_anchor(s, store) is None  # once
    believed = anchors.Anchors(s, PublishedKeys(s))
    assert believed.anchored(str(agg), 1, first.hash)
    assert believed.anchored(str(agg), 2, second.hash)
    assert not believed.anchored(str(agg), 2, "0" * 64)  # another event at the anchored head
    assert not believed.anchored(str(agg), 3, "x")  # written after the anchor
    assert not believed.anchored(str(uuid4()), 1, first.hash)

    path = s.keys_dir / anchors.ANCHOR_FILE
    doc = json.loads(path.read_text())
    doc["heads"][str(agg)] = [5, "f" * 64]  # extended by hand: the signature no longer holds
    path.write_text(json.dumps(doc))
    assert not anchors.Anchors(s, PublishedKeys(s)).anchored(str(agg), 1, first.hash)


def test_a_store_with_signed_events_only_needs_no_anchor(tmp_path: Path) -> None:
    s = Settings(var_dir=tmp_path)
    keys.ensure_dev_key(s)
    assert anchors.ensure_anchor(s, InMemoryEventStore()) is None
    assert not (s.keys_dir / anchors.ANCHOR_FILE).exists()

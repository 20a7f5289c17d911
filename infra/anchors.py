"""The signed anchor of unsigned (v1) history: the heads of every aggregate's v1 events when
signing began, signed by the keyring, so that history written before signatures stays believable
while an unsigned event written after it is refused (events.signatures.Legacy).

`veritas init` writes it once, from the event store, when the store holds v1 events and no
anchor exists. The anchor's signature is over
`b"veritas-anchor-v1\\n" + canonical_json({"anchored_at": ..., "heads": {aggregate_id: [version,
hash]}})`; an anchor whose signature does not verify anchors nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from config.settings import Settings
from events.envelope import Undecodable, canonical_json, read_published
from events.signatures import KeySource
from infra import keys
from infra.postgres.eventstore import EventStore
from ml import signing

log = logging.getLogger("veritas.anchors")
ANCHOR_FILE = "legacy-anchor.json"
PREFIX = b"veritas-anchor-v1\n"


def v1_heads(store: EventStore, page: int = 5000) -> dict[str, tuple[int, str]]:
    """The last unsigned event of every aggregate that has one, from the store."""
    heads: dict[str, tuple[int, str]] = {}
    after = 0
    while batch := store.notifications(after, page):
        for n in batch:
            try:
                doc = read_published(n.state)
            except Undecodable:
                continue
            if doc.get("envelope_version") is None:
                heads[doc["aggregate_id"]] = (doc["version"], doc["hash"])
        after = batch[-1].id
    return heads


def _message(body: dict[str, Any]) -> bytes:
    return PREFIX + canonical_json(body)


def ensure_anchor(settings: Settings, store: EventStore) -> int | None:
    """Anchor the store's unsigned history once; returns the aggregates anchored (None: the
    anchor exists already, or there is nothing to anchor)."""
    path = settings.keys_dir / ANCHOR_FILE
    if path.exists():
        return None
    heads = v1_heads(store)
    if not heads:
        return None
    body = {
        "anchored_at": datetime.now(UTC).isoformat(),
        "heads": {a: [v, h] for a, (v, h) in sorted(heads.items())},
    }
    key_id, signature = keys.load(settings).sign(_message(body))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**body, "key_id": key_id, "signature": signature}, indent=1))
    tmp.replace(path)
    log.info("anchored the unsigned history of %d aggregates", len(heads))
    return len(heads)


class Anchors:
    """events.signatures.Legacy over the anchor file."""

    def __init__(self, settings: Settings, keyring: KeySource) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        path = settings.keys_dir / ANCHOR_FILE
        if not path.exists():
            return
        doc = json.loads(path.read_text())
        body = {"anchored_at": doc["anchored_at"], "heads": doc["heads"]}
        key = keyring.lookup(str(doc.get("key_id")))
        if key is None or not signing.verify(key.key, _message(body), str(doc.get("signature"))):
            log.error("the legacy anchor %s does not verify: it anchors nothing", path)
            return
        self.heads = {a: (int(v), str(h)) for a, (v, h) in doc["heads"].items()}

    def anchored(self, aggregate_id: str, version: int, hash_hex: str) -> bool:
        last, head = self.heads.get(aggregate_id, (0, ""))
        return version < last or (version == last and hash_hex == head)

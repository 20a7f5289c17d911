"""Verify Veritas events (README: "Event envelope v2") with json, hashlib, base64, cryptography.

usage: python verify_events.py KEYS.json < RECORDS.jsonl
KEYS.json is GET /keys; each line of RECORDS.jsonl is one record value of an events topic, in
partition order. Prints "OK <n> events" and exits 0, or one line per failure and exits 1.
"""

import base64
import hashlib
import json
import sys
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

with open(sys.argv[1], encoding="utf-8") as f:
    KEYS = {k["key_id"]: k for k in json.load(f)["keys"]}
seen: dict[tuple[str, int], str] = {}  # (aggregate_id, version) -> hash
heads: dict[str, tuple[int, str]] = {}  # aggregate_id -> (version, hash) of its last event


def failure(e: dict[str, Any]) -> str | None:
    body = {k: v for k, v in e.items() if k not in ("hash", "key_id", "signature")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if hashlib.sha256((e["prev_hash"] + "\n" + text).encode()).hexdigest() != e["hash"]:
        return "bad_hash"
    version, prev = heads.get(e["aggregate_id"], (0, "0" * 64))
    if (e["aggregate_id"], e["version"]) in seen:
        return "conflicting_version"
    if e["version"] != version + 1 or e["prev_hash"] != prev:
        return "chain_broken"
    key = KEYS.get(e.get("key_id"))
    if e.get("envelope_version") != 2 or "signature" not in e:
        return "unsigned"
    if key is None:
        return "unknown_key"
    when = datetime.fromisoformat(e["occurred_at"])
    if key["retired_at"] and when >= datetime.fromisoformat(key["retired_at"]):
        return "retired_key"
    public = load_pem_public_key(key["public_key_pem"].encode())
    try:
        assert isinstance(public, Ed25519PublicKey)
        public.verify(base64.b64decode(e["signature"]), b"veritas-event-v2\n" + e["hash"].encode())
    except Exception:  # InvalidSignature, bad base64, not an Ed25519 key
        return "bad_signature"
    return None


bad, n = [], 0
for line_no, line in enumerate(sys.stdin, 1):
    e = json.loads(line) if line.strip() else None
    why = failure(e) if e else None
    if e is None or (
        why == "conflicting_version" and seen[e["aggregate_id"], e["version"]] == e["hash"]
    ):
        continue  # a blank line, or a copy the relay published again
    n += 1
    if why:
        bad.append(
            f"line {line_no}: {e['aggregate_type']} {e['aggregate_id']} v{e['version']}: {why}"
        )
    seen.setdefault((e["aggregate_id"], e["version"]), e["hash"])
    if e["version"] > heads.get(e["aggregate_id"], (0, ""))[0]:
        heads[e["aggregate_id"]] = (e["version"], e["hash"])
print("\n".join(bad) if bad else f"OK {n} events")
sys.exit(1 if bad else 0)

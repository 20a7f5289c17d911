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
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

KEYS = {k["key_id"]: k for k in json.loads(Path(sys.argv[1]).read_text())["keys"]}
believed: dict[tuple[str, int], str] = {}  # (aggregate_id, version) -> hash, of good events


def why(e: dict[str, Any]) -> str | None:
    body = {k: v for k, v in e.items() if k not in ("hash", "key_id", "signature")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if hashlib.sha256((e["prev_hash"] + "\n" + text).encode()).hexdigest() != e["hash"]:
        return "bad_hash"
    agg, v, key = e["aggregate_id"], e["version"], KEYS.get(e.get("key_id"))
    if (agg, v) in believed:  # the relay may publish an event twice: a copy is no failure
        return "copy" if believed[agg, v] == e["hash"] else "conflicting_version"
    if (v > 1 and (agg, v - 1) not in believed) or e["prev_hash"] != believed.get(
        (agg, v - 1), "0" * 64
    ):
        return "chain_broken"
    if e.get("envelope_version") != 2 or "signature" not in e:
        return "unsigned"
    if key is None:
        return "unknown_key"
    retired = key["retired_at"] and datetime.fromisoformat(key["retired_at"])
    if retired and datetime.fromisoformat(e["occurred_at"]) >= retired:
        return "retired_key"
    try:
        public: Any = load_pem_public_key(key["public_key_pem"].encode())
        public.verify(base64.b64decode(e["signature"]), b"veritas-event-v2\n" + e["hash"].encode())
    except Exception:  # InvalidSignature, bad base64, not an Ed25519 key
        return "bad_signature"
    return None


bad, n = [], 0
for line_no, line in enumerate(sys.stdin, 1):
    e = json.loads(line) if line.strip() else None
    if e is None or (failure := why(e)) == "copy":
        continue
    n += 1
    if failure:
        bad.append(
            f"line {line_no}: {e['aggregate_type']} {e['aggregate_id']} v{e['version']}: {failure}"
        )
    else:
        believed[e["aggregate_id"], e["version"]] = e["hash"]
print("\n".join(bad) if bad else f"OK {n} events")
sys.exit(1 if bad else 0)

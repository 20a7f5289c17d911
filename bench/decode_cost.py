"""decode() cost: microseconds per command for a typical RegisterModel and RegisterModelVersion
envelope (JWT verified once and cached, as in a batch). CPU time (time.process_time), best of
--repeat runs of --number calls each, so other load on a shared machine counts less.

Usage: python bench/decode_cost.py [--number 20000] [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.decoding import Ready, decode
from config.settings import Settings
from infra.auth import issue_token

SETTINGS = Settings(jwt_secret="bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz")
NOW = datetime.now(UTC)
MODEL = {
    "name": "fraud-model-123",
    "description": "Card fraud scorer",
    "intended_use": "scoring card transactions",
    "limitations": "EU only",
    "tags": {"team": "risk", "tier": "1"},
}
VERSION = {
    "model_name": "fraud-model-123",
    "version": "1.2.3",
    "artifact": {"uri": "s3://models/fraud/1.2.3", "sha256": "b" * 64, "signature": "sig"},
    "lineage": {
        "parent_version": "1.2.2",
        "dataset": {"name": "txns", "version": "1.0.0", "checksum": "a" * 64},
        "training_config": {"lr": 0.001, "epochs": 10, "layers": [64, 32]},
        "environment": {"python": "3.11"},
        "code_revision": "abc123",
    },
    "metrics": {"auc": 0.91, "f1": 0.83},
}


def envelope(ctype: str, version: int, payload: dict[str, Any]) -> bytes:
    doc = {
        "command_id": str(uuid.uuid4()),
        "type": ctype,
        "schema_version": version,
        "issued_at": NOW.isoformat(),
        "payload": payload,
    }
    return json.dumps(doc).encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    auth = "Bearer " + issue_token(SETTINGS, "bench", ["data_scientist", "ml_engineer"])
    for ctype, version, payload in (
        ("RegisterModel", 2, MODEL),
        ("RegisterModelVersion", 1, VERSION),
    ):
        raw = envelope(ctype, version, payload)
        assert isinstance(decode(SETTINGS, raw, auth, "registry.commands", NOW), Ready)
        runs = timeit.repeat(
            lambda raw=raw: decode(SETTINGS, raw, auth, "registry.commands", NOW),  # type: ignore[misc]
            number=args.number,
            repeat=args.repeat,
            timer=time.process_time,
        )
        print(f"{ctype:<22} {min(runs) / args.number * 1e6:6.1f} us  ({len(raw)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

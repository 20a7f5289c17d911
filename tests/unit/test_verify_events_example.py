"""examples/verify_events.py, written from the README alone, agrees with the project's checks:
a signed log passes; a forged, re-keyed or edited event is named with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from config.settings import ROOT
from events.envelope import read_published
from ml import signing
from tests.unit.test_event_signatures import KEY, event, kid, signed
from tests.unit.test_log_check import chain

EXAMPLE = ROOT / "examples" / "verify_events.py"


def keys_json(tmp: Path, retired_at: str | None = None) -> Path:
    doc = {
        "keys": [
            {
                "key_id": kid(KEY),
                "algorithm": "Ed25519",
                "public_key_pem": signing.public_key_to_pem(KEY.public_key()).decode(),
                "created_at": "2026-01-01T00:00:00+00:00",
                "retired_at": retired_at,
            }
        ]
    }
    path = tmp / "keys.json"
    path.write_text(json.dumps(doc))
    return path


def run(keys: Path, lines: list[bytes]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), str(keys)],
        input=b"\n".join(lines).decode() + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_signed_log_with_copies_passes(tmp_path: Path) -> None:
    a, b = chain(3), chain(2)
    lines = [e.to_bytes() for e in [*a, *b, a[1]]]
    out = run(keys_json(tmp_path), lines)
    assert (out.returncode, out.stdout.strip()) == (0, "OK 5 events")


def test_forgeries_are_named(tmp_path: Path) -> None:
    a = chain(2)
    agg = a[0].aggregate_id
    unsigned = event(3, a[1].hash, aggregate_id=agg)
    other = signed(event(1, aggregate_id=uuid4()), Ed25519PrivateKey.generate())
    edited = read_published(a[1].to_bytes())
    edited["actor"] = "mallory"
    lines = [e.to_bytes() for e in [*a, unsigned, other]] + [json.dumps(edited).encode()]
    out = run(keys_json(tmp_path), lines)
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        f"line 3: Model {agg} v3: unsigned",
        f"line 4: Model {other.aggregate_id} v1: unknown_key",
        f"line 5: Model {agg} v2: bad_hash",
    ]


def test_a_retired_key_signs_nothing_after_its_retirement(tmp_path: Path) -> None:
    out = run(keys_json(tmp_path, retired_at="2026-06-01T00:00:00+00:00"), [chain(1)[0].to_bytes()])
    assert out.returncode == 1 and out.stdout.strip().endswith("v1: retired_key")


def test_a_forgery_does_not_take_the_place_of_the_real_event(tmp_path: Path) -> None:
    """A forged v2 ahead of the real v2 is named; the real one that follows still verifies, and
    so does the chain after it."""
    first = signed(event(), KEY)
    agg = first.aggregate_id
    forged = event(2, first.hash, aggregate_id=agg)  # unsigned
    real = signed(event(2, first.hash, aggregate_id=agg), KEY)
    after = signed(event(3, real.hash, aggregate_id=agg), KEY)
    out = run(keys_json(tmp_path), [e.to_bytes() for e in (first, forged, real, after)])
    assert (out.returncode, out.stdout.splitlines()) == (1, [f"line 2: Model {agg} v2: unsigned"])

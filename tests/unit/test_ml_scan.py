"""ml.scan: our own safetensors header check, and safetensors' loader, agree on what is sound."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from ml.scan import parse_header, scan


def _sound() -> bytes:
    return save({"a": np.ones((2, 3), dtype=np.float32), "b": np.arange(4, dtype=np.int64)})


def _with_header(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _split(blob: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def test_a_sound_file_has_no_findings(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(_sound())
    assert scan(path) == []
    manifest = {"tensors": {"a": {"shape": [2, 3]}, "b": {"shape": [4]}}}
    assert scan(path, manifest) == []
    assert scan(path, {"tensors": {"a": {"shape": [3, 2]}, "b": {"shape": [4]}}})
    assert scan(path, {"tensors": {"a": {"shape": [2, 3]}}})


def _tampered() -> dict[str, bytes]:
    header, data = _split(_sound())
    a = dict(header, a=dict(header["a"], dtype="F33"))
    gap = {k: dict(v, data_offsets=[o + 4 for o in v["data_offsets"]]) for k, v in header.items()}
    lying = dict(header, a=dict(header["a"], shape=[2, 4]))
    return {
        "trailing bytes": _sound() + b"\x00",
        "pickle": pickle.dumps({"a": [1, 2, 3]}),
        "zip (torch.save)": b"PK\x03\x04" + b"\x00" * 64,
        "unknown dtype": _with_header(a, data),
        "gap": _with_header(gap, b"\x00" * 4 + data),
        "shape lies": _with_header(lying, data),
        "header not json": struct.pack("<Q", 3) + b"{x]" + data,
        "header too long": struct.pack("<Q", 10**6) + b"{}",
        "short": b"\x01\x00",
        "metadata not strings": _with_header({**header, "__metadata__": {"k": 1}}, data),
        "not an object": _with_header([1, 2], b""),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("case", sorted(_tampered()))
def test_tampered_files_are_found(tmp_path: Path, case: str) -> None:
    blob = _tampered()[case]
    _, findings = parse_header(blob)
    assert findings, case
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob)
    assert scan(path)

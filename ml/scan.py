"""The artifact's security scan (no torch): a safetensors file holding tensors and nothing else.

Two independent checks, both must hold:

1. ``parse_header``: our own reading of the format. The file is an 8-byte little-endian header
   length N, N bytes of UTF-8 JSON (an object), then the tensor bytes. Each entry but
   ``__metadata__`` (a str -> str map) has a known ``dtype``, a ``shape`` of non-negative
   integers and ``data_offsets`` ``[begin, end]`` whose length is the shape's element count times
   the dtype's size. The entries, sorted by offset, cover the data section exactly: no gap, no
   overlap, no trailing bytes. The file must not begin with pickle's protocol byte (``0x80``) or a
   zip header (``PK\\x03\\x04``, ``torch.save``'s format).
2. ``safetensors.numpy.load_file`` loads it and returns only numpy arrays, with the names and
   shapes that the header and the manifest list.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "U16": 2,
    "I16": 2,
    "F16": 2,
    "BF16": 2,
    "U32": 4,
    "I32": 4,
    "F32": 4,
    "U64": 8,
    "I64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
PICKLE_MAGIC = b"\x80"
ZIP_MAGIC = b"PK\x03\x04"


def parse_header(data: bytes) -> tuple[dict[str, Any], list[str]]:
    """The header's tensor entries and the findings (an empty list: the layout is sound)."""
    if data[:1] == PICKLE_MAGIC or data[:4] == ZIP_MAGIC:
        return {}, ["the file is a pickle or zip archive, not safetensors"]
    if len(data) < 8:
        return {}, [f"the file has {len(data)} bytes, fewer than the 8-byte header length"]
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        return {}, [f"header length {n} does not fit the file's {len(data)} bytes"]
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [f"the header is not UTF-8 JSON: {exc}"]
    if not isinstance(header, dict):
        return {}, ["the header is not a JSON object"]
    findings = _check_metadata(header.pop("__metadata__", {}))
    for name, entry in header.items():
        findings += _check_entry(name, entry)
    if not findings:
        findings += _check_coverage(header, len(data) - 8 - n)
    return header, findings


def _check_metadata(meta: Any) -> list[str]:
    ok = isinstance(meta, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    )
    return [] if ok else ["__metadata__ is not a map of strings to strings"]


def _check_entry(name: str, entry: Any) -> list[str]:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return [f"tensor {name!r}: the entry is not {{dtype, shape, data_offsets}}"]
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        return [f"tensor {name!r}: unknown dtype {dtype!r}"]
    if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
        return [f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        return [f"tensor {name!r}: data_offsets {offsets!r} are not two non-negative integers"]
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != expected:
        return [f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for {expected} expected"]
    return []


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_coverage(header: dict[str, Any], data_bytes: int) -> list[str]:
    position = 0
    for name, entry in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, end = entry["data_offsets"]
        if begin != position:
            return [f"tensor {name!r} starts at {begin}, not at {position} (a gap or an overlap)"]
        position = end
    if position != data_bytes:
        return [
            f"the tensors cover {position} of {data_bytes} data bytes (trailing or missing bytes)"
        ]
    return []


def scan(model_path: Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """All findings for ``model_path``; an empty list means it passed. Never raises on content."""
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        return [f"cannot read {model_path}: {exc}"]
    header, findings = parse_header(data)
    if findings:
        return findings
    try:
        tensors = load_file(str(model_path))
    except Exception as exc:  # safetensors raises its own error types on malformed files
        return [f"safetensors refuses the file: {type(exc).__name__}: {exc}"]
    findings += [
        f"{k!r} is not a tensor" for k, v in tensors.items() if not isinstance(v, np.ndarray)
    ]
    if sorted(tensors) != sorted(header):
        findings.append(f"safetensors loaded {sorted(tensors)}, the header lists {sorted(header)}")
    if manifest is not None:
        findings += _against_manifest(header, manifest)
    return findings


def _against_manifest(header: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    listed = manifest.get("tensors")
    if not isinstance(listed, dict):
        return ["the manifest lists no tensors"]
    if sorted(listed) != sorted(header):
        return [f"the manifest lists tensors {sorted(listed)}, the file holds {sorted(header)}"]
    return [
        f"tensor {name!r}: shape {header[name]['shape']} in the file, {spec.get('shape')} in the manifest"
        for name, spec in listed.items()
        if list(header[name]["shape"]) != spec.get("shape")
    ]

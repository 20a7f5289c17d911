"""Upcasters lift an old command payload to the next schema_version, one step at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]


def _register_model_v1_to_v2(payload: Payload) -> Payload:
    out = dict(payload)
    if "purpose" in out and "intended_use" not in out:
        out["intended_use"] = out.pop("purpose")
    return out


UPCASTERS: dict[tuple[str, int], Callable[[Payload], Payload]] = {
    ("RegisterModel", 1): _register_model_v1_to_v2,
}


def upcast(command_type: str, schema_version: int, current: int, payload: Payload) -> Payload:
    if schema_version > current:
        raise ValueError(
            f"{command_type} schema_version {schema_version} is newer than the supported {current}"
        )
    for v in range(schema_version, current):
        step = UPCASTERS.get((command_type, v))
        if step is not None:
            payload = step(payload)
    return payload

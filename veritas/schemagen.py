"""Export the public message contract as JSON Schema files under schemas/.

Run it with `make schemas` (or `python -m veritas.schemagen`). It writes:

- schemas/commands/<Type>.v<schema_version>.json for every command payload in
  commands.catalog.COMMAND_TYPES, plus the older versions kept in HISTORICAL;
- schemas/events/<Type>.v<schema_version>.json for every event payload in
  events.catalog.EVENT_TYPES;
- schemas/envelopes/{command_envelope,event_envelope,command_result}.json.

Output is deterministic (sorted keys, indent 2, trailing newline), so tests/unit/test_schemas.py can
fail when a committed file is stale and can compare each version with the one in git HEAD.

When a payload changes incompatibly, raise its `schema_version`, add an upcaster, and keep the old
shape documented by adding a small model of it to HISTORICAL below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from commands.base import Command, CommandEnvelope, Name, Tags, Text
from commands.catalog import COMMAND_TYPES
from config.settings import ROOT
from events.catalog import EVENT_TYPES
from events.envelope import EventEnvelope
from events.results import CommandResult

SCHEMAS_DIR = Path("schemas")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _RegisterModelV1(Command):
    """RegisterModel as it was at schema_version 1: v2 renamed `purpose` to `intended_use`."""

    model_config = ConfigDict(title="RegisterModel")
    schema_version = 1
    name: Name
    description: Text
    purpose: Text
    limitations: Text
    owner: Name | None = None
    tags: Tags = {}


# Older schema versions of command payloads, kept so that old messages stay documented.
# Key: (command type, schema_version). commands.upcasting lifts each one to the current version.
HISTORICAL: dict[tuple[str, int], type[BaseModel]] = {
    ("RegisterModel", 1): _RegisterModelV1,
}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _schema(model: type[BaseModel], **extra: Any) -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema(), **extra}


def _message(kind: str, type_name: str, version: int, model: type[BaseModel]) -> tuple[Path, str]:
    schema = _schema(model, **{"x-veritas-type": type_name, "x-veritas-schema-version": version})
    return SCHEMAS_DIR / kind / f"{type_name}.v{version}.json", render(schema)


def generate() -> dict[Path, str]:
    """Every schema file, keyed by its path relative to the repository root."""
    out: dict[Path, str] = {}
    for name, cmd in COMMAND_TYPES.items():
        path, text = _message("commands", name, cmd.schema_version, cmd)
        out[path] = text
    for (name, version), model in HISTORICAL.items():
        current = COMMAND_TYPES[name].schema_version
        if version >= current:
            raise ValueError(
                f"HISTORICAL {name} v{version} is not older than the current v{current}"
            )
        path, text = _message("commands", name, version, model)
        out[path] = text
    for name, event in EVENT_TYPES.items():
        path, text = _message("events", name, event.schema_version, event)
        out[path] = text
    for file_name, model in (
        ("command_envelope", CommandEnvelope),
        ("event_envelope", EventEnvelope),
        ("command_result", CommandResult),
    ):
        out[SCHEMAS_DIR / "envelopes" / f"{file_name}.json"] = render(_schema(model))
    return dict(sorted(out.items()))


def breaking_changes(old: dict[str, Any], new: dict[str, Any], where: str = "") -> list[str]:
    """The ways `new` breaks messages valid under `old`, at the same schema_version.

    Breaking: a property removed (a rename is a removal plus an addition), a property that becomes
    required or a new required property, or a property whose JSON type changes. The rule is applied
    to nested object properties and to every `$defs` entry both schemas share. A new optional
    property is compatible. Pure: it reads only its two arguments.
    """
    problems: list[str] = []
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    added = sorted(set(new_props) - set(old_props))
    for name in sorted(set(old_props) - set(new_props)):
        hint = f" (renamed to {', '.join(repr(a) for a in added)}?)" if added else ""
        problems.append(f"{where}{name}: property removed{hint}")
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name in sorted(new_required - old_required):
        what = "property became required" if name in old_props else "new required property"
        problems.append(f"{where}{name}: {what}")
    for name in sorted(set(old_props) & set(new_props)):
        before, after = old_props[name], new_props[name]
        if "type" in before and "type" in after and before["type"] != after["type"]:
            problems.append(f"{where}{name}: type changed from {before['type']} to {after['type']}")
        problems.extend(breaking_changes(before, after, f"{where}{name}."))
    old_defs: dict[str, Any] = old.get("$defs", {})
    new_defs: dict[str, Any] = new.get("$defs", {})
    for name in sorted(set(old_defs) & set(new_defs)):
        problems.extend(breaking_changes(old_defs[name], new_defs[name], f"{where}$defs.{name}."))
    return problems


def write(root: Path = ROOT) -> list[Path]:
    """Write every generated file that differs from what is on disk; returns those written."""
    written = []
    for rel, text in generate().items():
        path = root / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(rel)
    return written


def main() -> int:
    written = write()
    for rel in written:
        print(f"wrote {rel}")
    expected = set(generate())
    orphans = sorted(
        p.relative_to(ROOT)
        for p in (ROOT / SCHEMAS_DIR).rglob("*.json")
        if p.relative_to(ROOT) not in expected
    )
    for rel in orphans:
        print(
            f"warning: {rel} is no longer generated; document that version in HISTORICAL "
            "(veritas/schemagen.py) or delete the file",
            file=sys.stderr,
        )
    if not written:
        print("schemas are up to date")
    return 1 if orphans else 0


if __name__ == "__main__":
    sys.exit(main())

"""The JSON Schema files under schemas/ are current, and stay backward compatible per version."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from commands.catalog import COMMAND_TYPES
from commands.upcasting import upcast
from config.settings import ROOT
from events.catalog import EVENT_TYPES
from veritas.schemagen import HISTORICAL, SCHEMAS_DIR, breaking_changes, generate

GENERATED = generate()
STALE_HINT = "run `make schemas` (python -m veritas.schemagen) and commit schemas/"


# --- the files on disk match the code ------------------------------------------------------------


def test_every_message_type_has_a_schema_file() -> None:
    names = {p.name for p in GENERATED}
    for name, cmd in COMMAND_TYPES.items():
        assert f"{name}.v{cmd.schema_version}.json" in names
    for name, event in EVENT_TYPES.items():
        assert f"{name}.v{event.schema_version}.json" in names
    for name, version in HISTORICAL:
        assert f"{name}.v{version}.json" in names
    assert {"command_envelope.json", "event_envelope.json", "command_result.json"} <= names


def test_schema_files_are_current() -> None:
    stale = [
        str(rel)
        for rel, text in GENERATED.items()
        if not (ROOT / rel).is_file() or (ROOT / rel).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"stale or missing schema files {stale}: {STALE_HINT}"


def test_no_orphan_schema_files() -> None:
    on_disk = {p.relative_to(ROOT) for p in (ROOT / SCHEMAS_DIR).rglob("*") if p.is_file()}
    orphans = sorted(str(p) for p in on_disk - set(GENERATED))
    assert not orphans, (
        f"{orphans} are not generated any more: keep an old version documented by adding it to "
        f"HISTORICAL in veritas/schemagen.py, or delete the file; then {STALE_HINT}"
    )


def test_generation_is_deterministic_and_canonical() -> None:
    assert generate() == GENERATED
    for rel, text in GENERATED.items():
        doc = json.loads(text)
        assert text == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n", rel


def test_register_model_v1_documents_purpose_and_v2_intended_use() -> None:
    v1 = json.loads(GENERATED[SCHEMAS_DIR / "commands" / "RegisterModel.v1.json"])
    v2 = json.loads(GENERATED[SCHEMAS_DIR / "commands" / "RegisterModel.v2.json"])
    assert "purpose" in v1["required"] and "intended_use" not in v1["properties"]
    assert "intended_use" in v2["required"] and "purpose" not in v2["properties"]
    assert v1["x-veritas-schema-version"] == 1 and v2["x-veritas-schema-version"] == 2
    # the only difference is the rename, which is why it needed the version bump
    assert breaking_changes(v1, v2) == [
        "purpose: property removed (renamed to 'intended_use'?)",
        "intended_use: new required property",
    ]


def test_schemas_validate_real_messages() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    v1 = json.loads(GENERATED[SCHEMAS_DIR / "commands" / "RegisterModel.v1.json"])
    v2 = json.loads(GENERATED[SCHEMAS_DIR / "commands" / "RegisterModel.v2.json"])
    old = {"name": "fraud", "description": "d", "purpose": "scoring", "limitations": "l"}
    jsonschema.validate(old, v1)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(old, v2)
    jsonschema.validate(upcast("RegisterModel", 1, 2, old), v2)
    envelope = json.loads(GENERATED[SCHEMAS_DIR / "envelopes" / "command_envelope.json"])
    jsonschema.validate(
        {
            "command_id": "c-1",
            "type": "RegisterModel",
            "schema_version": 2,
            "issued_at": "2026-11-27T12:00:00Z",
            "payload": upcast("RegisterModel", 1, 2, old),
        },
        envelope,
    )


# --- backward compatibility against git HEAD ----------------------------------------------------


def _git_head(rel: Path) -> dict[str, Any] | None:
    """The file as committed in HEAD, None when HEAD does not have it yet."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"HEAD:{rel.as_posix()}"],
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("git is not available")
    if proc.returncode != 0:
        return None
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.mark.parametrize("rel", sorted(GENERATED), ids=lambda p: p.as_posix())
def test_same_schema_version_stays_backward_compatible_with_head(rel: Path) -> None:
    old = _git_head(rel)
    if old is None:
        pytest.skip(f"{rel} is not committed in HEAD yet")
    problems = breaking_changes(old, json.loads(GENERATED[rel]))
    assert not problems, (
        f"{rel} changed incompatibly without a schema_version bump: {problems}. Raise the "
        "type's schema_version, add an upcaster in commands/upcasting.py and keep the old "
        "shape in HISTORICAL (veritas/schemagen.py)."
    )


# --- the compatibility rule itself ---------------------------------------------------------------


def _obj(props: dict[str, Any], required: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, **extra}


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
BASE = _obj({"name": S, "note": S}, ["name"])


def test_identical_schemas_are_compatible() -> None:
    assert breaking_changes(BASE, BASE) == []


def test_new_optional_field_is_compatible() -> None:
    assert breaking_changes(BASE, _obj({"name": S, "note": S, "extra": I}, ["name"])) == []


def test_dropping_a_requirement_is_compatible() -> None:
    assert breaking_changes(BASE, _obj({"name": S, "note": S}, [])) == []


def test_removed_field_breaks() -> None:
    assert breaking_changes(BASE, _obj({"name": S}, ["name"])) == ["note: property removed"]


def test_renamed_field_breaks() -> None:
    problems = breaking_changes(BASE, _obj({"name": S, "remark": S}, ["name"]))
    assert problems == ["note: property removed (renamed to 'remark'?)"]


def test_renamed_required_field_breaks_twice() -> None:
    problems = breaking_changes(BASE, _obj({"title": S, "note": S}, ["title"]))
    assert problems == [
        "name: property removed (renamed to 'title'?)",
        "title: new required property",
    ]


def test_new_required_field_breaks() -> None:
    problems = breaking_changes(BASE, _obj({"name": S, "note": S, "owner": S}, ["name", "owner"]))
    assert problems == ["owner: new required property"]


def test_optional_field_becoming_required_breaks() -> None:
    problems = breaking_changes(BASE, _obj({"name": S, "note": S}, ["name", "note"]))
    assert problems == ["note: property became required"]


def test_changed_type_breaks() -> None:
    problems = breaking_changes(BASE, _obj({"name": S, "note": I}, ["name"]))
    assert problems == ["note: type changed from string to integer"]


def test_nested_objects_and_defs_are_checked() -> None:
    old = _obj(
        {"artifact": {"$ref": "#/$defs/Artifact"}, "meta": _obj({"a": S}, [])},
        [],
        **{"$defs": {"Artifact": _obj({"uri": S, "sha256": S}, ["uri"])}},
    )
    new = _obj(
        {"artifact": {"$ref": "#/$defs/Artifact"}, "meta": _obj({"b": S}, [])},
        [],
        **{"$defs": {"Artifact": _obj({"uri": S, "sha256": S}, ["uri", "sha256"])}},
    )
    assert breaking_changes(old, new) == [
        "meta.a: property removed (renamed to 'b'?)",
        "$defs.Artifact.sha256: property became required",
    ]


def test_breaking_changes_does_not_mutate_its_arguments() -> None:
    old, new = json.loads(json.dumps(BASE)), _obj({"name": S}, ["name", "x"])
    snapshot = json.dumps([old, new], sort_keys=True)
    breaking_changes(old, new)
    assert json.dumps([old, new], sort_keys=True) == snapshot

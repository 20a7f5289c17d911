"""Seed 004's semantic-versioning rule for model versions (no torch).

``next_version`` compares a new artifact's manifest with its parent's:

* no parent: ``1.0.0`` (rule ``first_version``);
* MAJOR: a declared major change, or the input schema (features, their order or dtypes) or the
  output schema (classes) differs: callers built for the parent cannot use the new version;
* MINOR: same schema, other architecture (e.g. ``hidden_units``);
* PATCH: same schema and architecture: other hyperparameters, or new data.

``bump_past`` moves a version past those already taken, in the component that was bumped.
"""

from __future__ import annotations

import re
from collections.abc import Set
from dataclasses import dataclass
from typing import Any

FIRST_VERSION = "1.0.0"
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
# Hyperparameters that define the architecture; they are compared through "architecture".
_ARCHITECTURE_HP = ("hidden_units",)


@dataclass(frozen=True)
class VersionDecision:
    version: str
    bump: str  # "first" | "major" | "minor" | "patch"
    rule: str
    inputs: dict[str, Any]


def parse(version: str) -> tuple[int, int, int]:
    """``"MAJOR.MINOR.PATCH"`` -> a tuple; ``ValueError`` on anything else."""
    match = _SEMVER.match(version)
    if match is None:
        raise ValueError(f"not a semantic version MAJOR.MINOR.PATCH: {version!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def bump(version: str, part: str) -> str:
    """The next version in ``part`` (``major``, ``minor`` or ``patch``), lower parts reset."""
    major, minor, patch = parse(version)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ValueError(f"unknown version part {part!r}")


def _part_of(version: str) -> str:
    """The component a bump to ``version`` increased: the lowest non-zero one."""
    _, minor, patch = parse(version)
    return "patch" if patch else "minor" if minor else "major"


def bump_past(version: str, taken: Set[str], part: str | None = None) -> str:
    """``version``, or the next free one bumping ``part`` (default: its lowest non-zero part)."""
    part = part or _part_of(version)
    while version in taken:
        version = bump(version, part)
    return version


def _schema(manifest: dict[str, Any], key: str) -> Any:
    return manifest.get(key)


def _changed_hyperparameters(parent: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = parent.get("hyperparameters", {}), new.get("hyperparameters", {})
    keys = sorted((set(a) | set(b)) - set(_ARCHITECTURE_HP))
    return [k for k in keys if a.get(k) != b.get(k)]


def compare(parent: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What differs between two manifests, as recorded in ``VersionDecision.inputs``."""
    return {
        "input_schema_equal": _schema(parent, "input_schema") == _schema(new, "input_schema"),
        "output_schema_equal": _schema(parent, "output_schema") == _schema(new, "output_schema"),
        "architecture_equal": parent.get("architecture") == new.get("architecture"),
        "hyperparameters_changed": _changed_hyperparameters(parent, new),
        "dataset_changed": parent.get("dataset", {}).get("sha256")
        != new.get("dataset", {}).get("sha256"),
    }


def _rule(diff: dict[str, Any], declared_major: bool) -> tuple[str, str]:
    if declared_major:
        return "major", "declared_major"
    if not diff["input_schema_equal"]:
        return "major", "input_schema_changed"
    if not diff["output_schema_equal"]:
        return "major", "output_schema_changed"
    if not diff["architecture_equal"]:
        return "minor", "architecture_changed"
    return "patch", "same_schema_and_architecture"


def next_version(
    parent_manifest: dict[str, Any] | None,
    parent_version: str | None,
    new_manifest: dict[str, Any],
    declared_major: bool = False,
    taken: Set[str] = frozenset(),
) -> VersionDecision:
    """The new artifact's version under seed 004's rule, past every version in ``taken``."""
    if parent_manifest is None or parent_version is None:
        if (parent_manifest is None) != (parent_version is None):
            raise ValueError("give both the parent's manifest and its version, or neither")
        version = bump_past(FIRST_VERSION, taken, "major")
        return VersionDecision(version, "first", "first_version", {"parent_version": None})
    parse(parent_version)
    diff = compare(parent_manifest, new_manifest)
    part, rule = _rule(diff, declared_major)
    version = bump_past(bump(parent_version, part), taken, part)
    inputs = {"parent_version": parent_version, "declared_major": declared_major, **diff}
    return VersionDecision(version, part, rule, inputs)

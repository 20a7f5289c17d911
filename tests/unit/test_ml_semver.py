"""ml.semver: seed 004's bump rule and collision-free versions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ml.semver import bump_past, next_version, parse


def _manifest(features: int = 4, classes: int = 3, hidden: int = 64, lr: float = 1e-3,
              data: str = "d1") -> dict[str, Any]:  # fmt: skip
    return {
        "input_schema": {
            "features": [{"name": f"f{i}", "dtype": "float64"} for i in range(features)]
        },
        "output_schema": {
            "type": "class_probabilities",
            "classes": [f"c{i}" for i in range(classes)],
        },
        "architecture": {
            "type": "mlp-relu-v1",
            "inputs": features,
            "hidden_units": hidden,
            "outputs": classes,
        },
        "hyperparameters": {
            "epochs": 20,
            "learning_rate": lr,
            "batch_size": 32,
            "hidden_units": hidden,
            "seed": 0,
        },
        "dataset": {"sha256": data},
    }


def test_the_first_version_is_1_0_0() -> None:
    decision = next_version(None, None, _manifest())
    assert (decision.version, decision.bump, decision.rule) == ("1.0.0", "first", "first_version")
    assert next_version(None, None, _manifest(), taken={"1.0.0"}).version == "2.0.0"


@pytest.mark.parametrize(
    ("new", "declared", "version", "rule"),
    [
        (_manifest(lr=1e-2), False, "1.4.3", "same_schema_and_architecture"),
        (_manifest(data="d2"), False, "1.4.3", "same_schema_and_architecture"),
        (_manifest(hidden=128), False, "1.5.0", "architecture_changed"),
        (_manifest(features=5), False, "2.0.0", "input_schema_changed"),
        (_manifest(classes=4), False, "2.0.0", "output_schema_changed"),
        (_manifest(), True, "2.0.0", "declared_major"),
    ],
)
def test_bumps_follow_the_rule(
    new: dict[str, Any], declared: bool, version: str, rule: str
) -> None:
    decision = next_version(_manifest(), "1.4.2", new, declared_major=declared)
    assert (decision.version, decision.rule) == (version, rule)
    assert decision.inputs["parent_version"] == "1.4.2"


def test_inputs_record_what_changed() -> None:
    decision = next_version(_manifest(), "1.0.0", _manifest(lr=0.1, data="d9"))
    assert decision.inputs["hyperparameters_changed"] == ["learning_rate"]
    assert decision.inputs["dataset_changed"] is True and decision.inputs["architecture_equal"]
    reordered = copy.deepcopy(_manifest())
    reordered["input_schema"]["features"].reverse()
    assert next_version(_manifest(), "1.0.0", reordered).bump == "major"


def test_collisions_are_skipped_in_the_bumped_part() -> None:
    assert bump_past("1.0.1", {"1.0.1", "1.0.2"}) == "1.0.3"
    assert bump_past("1.1.0", {"1.1.0"}) == "1.2.0"
    assert bump_past("2.0.0", {"2.0.0", "3.0.0"}) == "4.0.0"
    assert bump_past("1.0.5", set()) == "1.0.5"
    taken = {"1.0.1", "1.1.0", "2.0.0"}
    assert next_version(_manifest(), "1.0.0", _manifest(lr=0.5), taken=taken).version == "1.0.2"
    assert next_version(_manifest(), "1.0.0", _manifest(hidden=8), taken=taken).version == "1.2.0"
    assert next_version(_manifest(), "1.0.0", _manifest(classes=2), taken=taken).version == "3.0.0"


def test_bad_versions_and_half_parents_are_refused() -> None:
    for bad in ("v1.0.0", "1.0", "01.0.0", "1.0.0-rc1"):
        with pytest.raises(ValueError):
            parse(bad)
    with pytest.raises(ValueError, match="or neither"):
        next_version(_manifest(), None, _manifest())

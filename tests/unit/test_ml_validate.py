"""ml.validate: seed 004's gates against stub production artifacts, and the first-version case."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ml import datasets, prepare
from ml.errors import InvalidJob
from ml.gates import at_share, drift_gate, with_drift
from ml.validate import NO_BASELINE, Thresholds, ValidationReport, validate
from tests.unit.ml_support import digits_snapshot, train_artifact

COMPARATIVE = ("accuracy_vs_production", "latency_p95", "peak_memory", "schema")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A strong and a weak artifact of the same architecture, and a much bigger one."""
    root = tmp_path_factory.mktemp("artifacts")
    s = digits_snapshot()
    return {
        "strong": train_artifact(root / "strong", s),
        "weak": train_artifact(root / "weak", s, epochs=1, learning_rate=1e-4),
        "big": train_artifact(root / "big", s, epochs=1, hidden_units=8192),
    }


def _gates(report: ValidationReport) -> dict[str, dict[str, Any]]:
    return {g["gate"]: g for g in report.gates}


def test_a_better_candidate_than_production_passes(artifacts: dict[str, Path]) -> None:
    report = validate(digits_snapshot(), artifacts["strong"], artifacts["weak"], 0.9)
    gates = _gates(report)
    assert report.passed, report.gates
    acc = gates["accuracy_vs_production"]
    assert acc["baseline"] == report.baseline_metrics["accuracy"] < 0.5  # type: ignore[index]
    assert acc["threshold"] == pytest.approx(0.95 * acc["baseline"])
    assert report.metrics["accuracy"] >= 0.95 and report.metrics["size_bytes"] > 0
    assert gates["schema"]["value"] == gates["schema"]["baseline"]
    assert gates["security_scan"]["value"] == 0
    assert set(gates) >= {"accuracy_min", *COMPARATIVE, "security_scan"}
    assert all(
        set(g) == {"gate", "passed", "value", "threshold", "baseline", "detail"}
        for g in report.gates
    )
    json.dumps(report.to_dict(), allow_nan=False)  # the report is plain JSON


def test_a_worse_candidate_than_production_fails(artifacts: dict[str, Path]) -> None:
    report = validate(
        digits_snapshot(), artifacts["weak"], artifacts["strong"], 0.05, check_drift=False
    )
    gates = _gates(report)
    assert not report.passed
    assert gates["accuracy_min"]["passed"]  # the absolute minimum alone would have let it through
    assert not gates["accuracy_vs_production"]["passed"]
    assert gates["accuracy_vs_production"]["baseline"] >= 0.95
    assert report.skipped == ["data_drift"]


def test_the_first_version_is_held_to_the_absolute_thresholds_alone(
    artifacts: dict[str, Path],
) -> None:
    report = validate(digits_snapshot(), artifacts["strong"], None, 0.9, check_drift=False)
    gates = _gates(report)
    assert report.passed and report.baseline_metrics is None
    for name in COMPARATIVE:
        assert gates[name]["baseline"] is None and gates[name]["detail"] == NO_BASELINE
    assert gates["latency_p95"]["value"] > 0 and gates["peak_memory"]["value"] > 0
    failing = validate(digits_snapshot(), artifacts["weak"], None, 0.9, check_drift=False)
    assert not failing.passed and not _gates(failing)["accuracy_min"]["passed"]


def test_a_much_bigger_model_fails_latency_and_memory(artifacts: dict[str, Path]) -> None:
    strict = Thresholds(latency_slack_ms=0.0)
    report = validate(digits_snapshot(), artifacts["big"], artifacts["strong"], 0.5,
                      thresholds=strict, check_drift=False)  # fmt: skip
    gates = _gates(report)
    assert not gates["peak_memory"]["passed"] and gates["peak_memory"]["value"] > 2_000_000
    assert not gates["latency_p95"]["passed"]
    assert gates["latency_p95"]["value"] > gates["latency_p95"]["threshold"]


def test_a_schema_change_fails_unless_declared_major(
    artifacts: dict[str, Path], tmp_path: Path
) -> None:
    s = digits_snapshot()
    fewer = dataclasses.replace(
        s, X_train=s.X_train[:, 1:], X_holdout=s.X_holdout[:, 1:], reference_X=s.reference_X[:, 1:],
        feature_names=s.feature_names[1:], mean=s.mean[1:], std=s.std[1:],
    )  # fmt: skip
    production = train_artifact(tmp_path / "fewer", fewer)
    undeclared = _gates(validate(s, artifacts["strong"], production, 0.5, check_drift=False))
    assert not undeclared["schema"]["passed"] and "removed []" in undeclared["schema"]["detail"]
    assert "pixel_0_0" in undeclared["schema"]["detail"]
    # production's features are all in this holdout, so its accuracy is still measured on it
    assert undeclared["accuracy_vs_production"]["baseline"] >= 0.9
    declared = validate(
        s, artifacts["strong"], production, 0.5, declared_major=True, check_drift=False
    )
    assert _gates(declared)["schema"]["passed"]


def test_a_tampered_candidate_fails_the_security_scan(
    artifacts: dict[str, Path], tmp_path: Path
) -> None:
    candidate = tmp_path / "cand"
    shutil.copytree(artifacts["strong"], candidate)
    with (candidate / "model.safetensors").open("ab") as f:
        f.write(b"\x00trailing")
    report = validate(digits_snapshot(), candidate, artifacts["strong"], 0.5, check_drift=False)
    assert not report.passed and [g["gate"] for g in report.gates] == ["security_scan"]
    assert "trailing" in report.gates[0]["detail"] and report.gates[0]["value"] == 1
    assert "accuracy_min" in report.skipped and report.metrics["accuracy"] is None
    (candidate / "model.safetensors").write_bytes(b"\x80\x04pickle")
    assert (
        "pickle"
        in validate(digits_snapshot(), candidate, None, 0.5, check_drift=False).gates[0]["detail"]
    )


def test_a_candidate_of_another_schema_than_the_snapshot_is_invalid(
    artifacts: dict[str, Path],
) -> None:
    s = digits_snapshot()
    other = dataclasses.replace(s, classes=[f"c{i}" for i in range(10)])
    with pytest.raises(InvalidJob, match="schema is not the snapshot's"):
        validate(other, artifacts["strong"], None, 0.5, check_drift=False)


def _fake_drift(share: float, calls: list[tuple[Any, ...]]) -> types.ModuleType:
    module = types.ModuleType("ml.drift")

    from ml.drift import DriftResult  # the real result type: the fake keeps the contract

    def check(
        reference: pd.DataFrame, current: pd.DataFrame, profile: dict[str, Any]
    ) -> DriftResult:
        calls.append((reference, current, profile))
        return DriftResult(
            share_drifted=share,
            drifted=["pixel_3_4"] if share else [],
            per_feature={},
            severity=None,
            n_reference=len(reference),
            n_current=len(current),
            evidently_version="fake",
        )

    module.check = check  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(("share", "passed"), [(0.0, True), (0.5, False)])
def test_the_drift_gate_calls_ml_drift_with_training_and_holdout_frames(
    artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch, share: float, passed: bool
) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setitem(sys.modules, "ml.drift", _fake_drift(share, calls))
    s = digits_snapshot()
    report = validate(s, artifacts["strong"], None, 0.5, thresholds=Thresholds(drift_share=0.3))
    gate = _gates(report)["data_drift"]
    assert gate["passed"] is passed and gate["value"] == share and gate["threshold"] == 0.3
    reference, current, profile = calls[0]
    assert list(reference.columns) == s.feature_names and len(reference) == len(s.y_train)
    assert len(current) == len(s.y_holdout) and profile == s.profile
    assert report.passed is passed


def test_the_real_drift_check_finds_no_drift_between_random_splits(
    artifacts: dict[str, Path],
) -> None:
    snapshot = prepare.prepare(datasets.load("sklearn:digits"), seed=0)
    gate = _gates(validate(snapshot, artifacts["strong"], None, 0.5))["data_drift"]
    assert gate["passed"] and gate["value"] <= 0.3


@pytest.mark.parametrize(("share", "candidate"), [(0.0, "strong"), (0.5, "strong"), (0.0, "bad")])
def test_a_report_with_the_drift_gate_merged_in_equals_one_made_with_it(
    artifacts: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    share: float,
    candidate: str,
) -> None:
    """The training step measures data_drift in a process of its own (ml.gates.with_drift)."""
    monkeypatch.setitem(sys.modules, "ml.drift", _fake_drift(share, []))
    s, t = digits_snapshot(), Thresholds(drift_share=0.3)
    path = artifacts["strong"]
    if candidate == "bad":  # fails the security scan: every other gate is skipped
        path = Path(shutil.copytree(path, tmp_path / "bad"))
        (path / "model.safetensors").write_bytes(b"\x80\x04pickle")
    whole = validate(s, path, None, 0.5, thresholds=t).to_dict()
    part = validate(s, path, None, 0.5, thresholds=t, check_drift=False).to_dict()
    merged = with_drift(part, drift_gate(s, 0.3))

    def verdicts(r: dict[str, Any]) -> list[tuple[str, bool]]:
        return [(g["gate"], g["passed"]) for g in r["gates"]]

    assert verdicts(merged) == verdicts(whole) and merged["passed"] is whole["passed"]
    assert merged["skipped"] == whole["skipped"]
    assert ("data_drift" in merged["skipped"]) is (candidate == "bad")
    assert whole["passed"] is (candidate == "strong" and share == 0.0)
    if candidate == "strong":
        assert merged["gates"][-1] == whole["gates"][-1] == drift_gate(s, 0.3)
        # measured beside training (at the default threshold), judged at validation's
        assert at_share(drift_gate(s), 0.3) == drift_gate(s, 0.3)
        assert at_share(drift_gate(s), -1.0)["passed"] is False


def test_peak_memory_is_repeatable_and_counts_the_tensors(artifacts: dict[str, Path]) -> None:
    from ml.measure import peak_memory_bytes

    row = digits_snapshot().X_holdout[:1]
    path = artifacts["strong"] / "model.safetensors"
    first, second = peak_memory_bytes(path, row), peak_memory_bytes(path, row)
    assert abs(first - second) <= 0.02 * first and first >= path.stat().st_size

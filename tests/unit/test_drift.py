"""ml.drift: method choice, verdicts against Evidently's own report, constants, overrides, HTML."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from evidently import Dataset, Report
from evidently.presets import DataDriftPreset
from scipy.stats import binom

from ml.drift import (
    DriftChecker,
    check,
    choose_methods,
    choose_thresholds,
    guard_limit,
    infer_kind,
    infer_profile,
    per_column_alpha,
    report_html,
)

ROOT = Path(__file__).resolve().parents[2]
CONTINUOUS = ["x1", "x2", "x3", "x4"]


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {
        "const": np.full(n, 1.0),
        "flag": (rng.random(n) < 0.3).astype(float),
        "level": rng.integers(0, 6, n).astype(float),
        "colour": rng.choice(["red", "green", "blue"], n),
    }
    data |= {c: rng.normal(10.0 * i, 1.0 + i, n) for i, c in enumerate(CONTINUOUS)}
    return pd.DataFrame(data)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(600, seed=1)


@pytest.fixture(scope="module")
def checker(reference: pd.DataFrame) -> DriftChecker:
    return DriftChecker(reference, infer_profile(reference))


def shifted(window: pd.DataFrame, reference: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = window.copy()
    for c in columns:
        out[c] = out[c] + reference[c].std()
    return out


def test_kinds_are_inferred_like_the_data_preparation(reference: pd.DataFrame) -> None:
    kinds = {c: infer_kind(reference[c]) for c in reference.columns}
    assert kinds == {
        "const": "constant",
        "flag": "discrete",
        "level": "discrete",
        "colour": "discrete",
    } | dict.fromkeys(CONTINUOUS, "continuous")
    assert infer_kind(pd.Series(np.arange(25.0))) == "continuous"  # more than 20 integral values


def test_methods_by_kind(reference: pd.DataFrame) -> None:
    methods = choose_methods(infer_profile(reference), reference=reference)
    assert methods == {
        "const": None,
        "flag": "z",
        "level": "ks",
        "colour": "chisquare",
    } | dict.fromkeys(CONTINUOUS, "ks")


def test_profile_as_mapping_without_kinds_is_accepted(reference: pd.DataFrame) -> None:
    """The data preparation's shape ({name: stats}); a missing kind is inferred."""
    profile = {"features": {c: {"mean": 0.0} for c in reference.columns}}
    listed = choose_methods(infer_profile(reference), reference=reference)
    assert choose_methods(profile, reference=reference) == listed
    declared = {"features": [{"name": "x1", "kind": "discrete", "n_unique": 2, "mean": 1.0}]}
    assert choose_methods(declared) == {"x1": "z"}


def test_alpha_bounds_the_same_distribution_warning_rate() -> None:
    for n in (4, 13, 30, 61):
        alpha = per_column_alpha(n, 0.1)
        k = int(np.ceil(round(0.1 * n, 9)))
        assert binom.sf(k - 1, n, alpha) == pytest.approx(0.01, rel=1e-6)
    assert per_column_alpha(4) == pytest.approx(1 - 0.99**0.25)


def test_same_distribution_window_has_no_severity(checker: DriftChecker) -> None:
    result = checker.check(frame(200, seed=2))
    assert result.severity is None
    assert result.share_drifted == 0.0 and result.drifted == []
    assert (result.n_reference, result.n_current) == (600, 200)
    assert set(result.per_feature) == set(checker.features)


def test_mild_shift_warns_and_strong_shift_is_critical(
    checker: DriftChecker, reference: pd.DataFrame
) -> None:
    window = frame(200, seed=3)
    mild = checker.check(shifted(window, reference, ["x1"]))
    assert (mild.severity, mild.drifted, mild.alert) == ("warning", ["x1"], False)
    assert mild.share_drifted == pytest.approx(1 / 7)
    strong = checker.check(shifted(window, reference, CONTINUOUS))
    assert strong.severity == "critical" and strong.model_dump()["alert"] is True
    assert sorted(strong.drifted) == CONTINUOUS


def test_verdicts_equal_evidentlys_own_report(
    checker: DriftChecker, reference: pd.DataFrame
) -> None:
    window = shifted(frame(150, seed=4), reference, ["x1", "x2"])
    window["level"] = np.minimum(window["level"] + 1, 5)
    result = checker.check(window)
    tested = checker.tested
    preset = DataDriftPreset(
        columns=tested,
        per_column_method={c: str(checker.methods[c]) for c in tested},
        per_column_threshold={c: checker.thresholds[c] for c in tested},
    )
    current = Dataset.from_pandas(window, data_definition=checker.definition)
    theirs = Report([preset], include_tests=True).run(current, checker.reference).dict()
    flags = {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
        for t in theirs["tests"]
        if t["metric_config"]["params"]["type"].endswith(":ValueDrift")
    }
    scores = {m["config"]["column"]: m["value"] for m in theirs["metrics"][1:]}
    share = theirs["metrics"][0]["value"]["share"]
    assert {c: result.per_feature[c].drifted for c in tested} == flags
    assert {c: result.per_feature[c].score for c in tested} == pytest.approx(scores)
    assert result.share_drifted == pytest.approx(share)
    assert 0 < sum(flags.values()) < len(tested)


def test_constant_column_that_varies_is_reported(checker: DriftChecker) -> None:
    window = frame(200, seed=2)
    window.loc[:29, "const"] = 2.0
    result = checker.check(window)
    verdict = result.per_feature["const"]
    assert (verdict.method, verdict.score, verdict.drifted) == ("constant_guard", 30.0, True)
    assert verdict.threshold == guard_limit(200, 600)
    assert result.drifted == ["const"] and result.severity == "warning"
    assert result.share_drifted == 0.0  # the share covers tested columns only


def test_a_constant_columns_rare_other_value_is_not_drift(checker: DriftChecker) -> None:
    """600 reference rows that were all one value allow another one at up to 0.5 % (95 %): a
    window of 200 may hold a few of them without drifting."""
    limit = guard_limit(200, 600)
    assert 2 <= limit < 10
    window = frame(200, seed=2)
    window.loc[: int(limit) - 1, "const"] = 2.0
    verdict = checker.check(window).per_feature["const"]
    assert (verdict.score, verdict.drifted) == (limit, False)
    window.loc[: int(limit), "const"] = 2.0
    assert checker.check(window).per_feature["const"].drifted


def test_overrides_replace_method_and_threshold(reference: pd.DataFrame) -> None:
    overrides: dict[str, Any] = {
        "x1": {"method": "psi"},
        "x2": {"threshold": 1e-300},
        "discrete": {"method": "jensenshannon", "threshold": 0.5},
        "flag": {"method": "z"},
        "const": {"method": "ks"},
    }
    profile = infer_profile(reference)
    methods = choose_methods(profile, overrides, reference=reference)
    assert (methods["x1"], methods["x2"], methods["level"], methods["colour"]) == (
        "psi",
        "ks",
        "jensenshannon",
        "jensenshannon",
    )
    assert (methods["flag"], methods["const"]) == ("z", None)
    thresholds = choose_thresholds(profile, methods, overrides, reference=reference)
    assert (thresholds["x1"], thresholds["x2"], thresholds["flag"]) == (0.1, 1e-300, 0.5)
    window = shifted(frame(200, seed=5), reference, ["x2"])
    result = check(reference, window, profile, overrides=overrides)
    x1, x2 = result.per_feature["x1"], result.per_feature["x2"]
    assert (x1.method, x1.threshold, x2.threshold) == ("psi", 0.1, 1e-300)
    assert not x2.drifted  # shifted, but no p-value is below 1e-300
    with pytest.raises(ValueError, match="nope"):
        DriftChecker(reference, profile, overrides={"x3": {"method": "nope"}})


def test_window_must_have_every_profiled_column(checker: DriftChecker) -> None:
    with pytest.raises(ValueError, match="x4"):
        checker.check(frame(50, seed=6).drop(columns=["x4"]))


def test_reference_is_capped(reference: pd.DataFrame) -> None:
    big = frame(1500, seed=7)
    assert DriftChecker(big, infer_profile(big)).n_reference == 1000


def test_report_html_is_self_contained(reference: pd.DataFrame) -> None:
    page = report_html(reference, frame(100, seed=8), infer_profile(reference)).decode()
    assert page.lstrip().startswith("<!DOCTYPE html>") and "</html>" in page
    remote = r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//"
    assert re.search(remote, page, re.IGNORECASE) is None
    # CSS loads (the bundle's "@import" is a CSS-in-JS string constant, not a load)
    assert re.search(r"(?:@import\s*|url\()\s*[\"']?(?:https?:)?//", page) is None
    assert "url(data:font/ttf;base64," in page  # the icon font is embedded too
    assert "x1" in page


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, ml.drift; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

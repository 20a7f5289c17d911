"""Drift statistics for the training saga's validation gate and the live drift monitor.

Evidently computes every statistic: this module chooses and configures its tests
(``ml.drift_methods``), runs one ``Report`` per window and reads the verdicts out of the
snapshot's result dict. It must stay torch-free (the monitor process never loads torch).

A ``DriftChecker`` builds the DataDefinition, the reference ``Dataset`` (at most
``REFERENCE_CAP`` rows) and the report's metrics once; each window then costs one
``Report.run``. That run is one ``ValueDrift`` per tested column (no ``DriftedColumnsCount``: it
would run every column's test a second time) plus a guard per constant column. About 80 % of
its time is the plotly figures ``ValueDrift`` builds for its widget, which Evidently 0.7.23
cannot skip; 15 % the column statistics and histograms, 1-2 % the tests themselves.

Constant columns: a reference constant is not testable, but a window in which it varies is
drift. An Evidently ``OutRangeValueCount`` (``OutListValueCount`` for non-numbers) counts the
window's values other than the reference's. A reference of n rows that never showed another value
still allows them at a rate up to ``1 - 0.05 ** (1 / n)`` (95 % confidence, about 3/n), so a
count is drift only when a binomial tail at that rate makes it improbable (``GUARD_ALPHA``): on
digits, a pixel that is 0 in all 1,000 reference rows is lit in about 1 of 200 served rows, which
is the same distribution, while a sensor that starts to vary lights many. A drifted guard marks
the column drifted and makes the severity at least ``warning``. ``share_drifted`` stays
Evidently's share over tested columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import evidently
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.core import ColumnType
from evidently.metrics import OutListValueCount, OutRangeValueCount, ValueDrift
from evidently.presets import DataDriftPreset
from pydantic import BaseModel, ConfigDict, computed_field
from scipy.stats import binom

from ml.drift_methods import (
    WARNING,
    ColumnOverride,
    Feature,
    Kind,
    Overrides,
    choose_methods,
    choose_thresholds,
    column_type,
    features,
    infer_kind,
    infer_profile,
    per_column_alpha,
)

__all__ = [
    "ALERT",
    "CRITICAL",
    "DEFAULT_WINDOW",
    "REFERENCE_CAP",
    "WARNING",
    "ColumnOverride",
    "DriftChecker",
    "DriftResult",
    "FeatureDrift",
    "Overrides",
    "check",
    "choose_methods",
    "choose_thresholds",
    "infer_kind",
    "infer_profile",
    "per_column_alpha",
    "report_html",
]

Severity = Literal["warning", "critical"]
CRITICAL = 0.3  # seed 004: drift_score critical (WARNING, 0.1, is in ml.drift_methods)
ALERT = 0.2  # seed 004: ModelDriftDetected when drift_score > 0.2
DEFAULT_WINDOW = 200  # rows per monitor window; chosen in bench/drift_window.py
REFERENCE_CAP = 1000  # reference rows kept (a seeded sample beyond that)
CONSTANT_GUARD = "constant_guard"
GUARD_ALPHA = 0.01  # a constant column's other values are drift below this tail probability
_GUARDS = ("OutRangeValueCount", "OutListValueCount")


class FeatureDrift(BaseModel):
    """One column's verdict. ``score``: a p-value (``ks``, ``z``, ``chisquare``), a distance
    (``psi``, ``wasserstein``, ...), or for ``constant_guard`` the count of other values."""

    model_config = ConfigDict(frozen=True)
    kind: Kind
    method: str
    score: float
    threshold: float
    drifted: bool


class DriftResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    share_drifted: float
    drifted: list[str]
    per_feature: dict[str, FeatureDrift]
    severity: Severity | None
    n_reference: int
    n_current: int
    evidently_version: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def alert(self) -> bool:
        """Seed 004's ModelDriftDetected condition."""
        return self.share_drifted > ALERT


class DriftChecker:
    """The reusable part of a drift check: one reference, profile and configuration."""

    def __init__(
        self,
        reference: pd.DataFrame,
        profile: Mapping[str, Any],
        *,
        warning: float = WARNING,
        critical: float = CRITICAL,
        overrides: Overrides | None = None,
        reference_cap: int = REFERENCE_CAP,
        seed: int = 0,
    ) -> None:
        self.warning, self.critical = warning, critical
        self.features = {f.name: f for f in features(profile, reference)}
        self.methods = choose_methods(profile, overrides, reference=reference)
        self.thresholds = choose_thresholds(
            profile, self.methods, overrides, warning=warning, reference=reference
        )
        self.tested = [name for name, m in self.methods.items() if m is not None]
        sample = reference[list(self.features)]
        if len(sample) > reference_cap:
            sample = sample.sample(n=reference_cap, random_state=seed)
        self.definition = self._definition()
        self.reference = Dataset.from_pandas(sample, data_definition=self.definition)
        self.n_reference = len(sample)
        self._guards = [
            self._guard(f, sample[f.name]) for f in self.features.values() if f.kind == "constant"
        ]
        self._report = Report(self._drift_metrics() + self._guards, include_tests=True)

    def check(self, current: pd.DataFrame) -> DriftResult:
        """One window's verdict: one ``Report.run``, read from the snapshot's dict."""
        snapshot = self._report.run(self._dataset(current), self.reference)
        per_feature = self._read(snapshot.dict(), len(current))
        tested = [per_feature[name] for name in self.tested]
        share = sum(f.drifted for f in tested) / len(tested) if tested else 0.0
        broken = any(f.drifted for f in per_feature.values() if f.method == CONSTANT_GUARD)
        return DriftResult(
            share_drifted=share,
            drifted=[name for name, f in per_feature.items() if f.drifted],
            per_feature=per_feature,
            severity=_severity(share, broken, self.warning, self.critical),
            n_reference=self.n_reference,
            n_current=len(current),
            evidently_version=evidently.__version__,
        )

    def html(self, current: pd.DataFrame) -> bytes:
        """Evidently's HTML report of a window: DataDriftPreset with the same tests, and the
        constant guards. A single file (Evidently embeds its JS bundle and font)."""
        items: list[Any] = list(self._guards)
        if self.tested:
            preset = DataDriftPreset(
                columns=self.tested,
                drift_share=self.warning,
                per_column_method={c: str(self.methods[c]) for c in self.tested},
                per_column_threshold={c: self.thresholds[c] for c in self.tested},
            )
            items.insert(0, preset)
        snapshot = Report(items, include_tests=True).run(self._dataset(current), self.reference)
        page: str = snapshot.get_html_str(as_iframe=False)
        return page.encode("utf-8")

    def _definition(self) -> DataDefinition:
        kinds = {name: column_type(self.methods[name], f) for name, f in self.features.items()}
        return DataDefinition(
            numerical_columns=[n for n, t in kinds.items() if t == ColumnType.Numerical],
            categorical_columns=[n for n, t in kinds.items() if t == ColumnType.Categorical],
        )

    def _drift_metrics(self) -> list[Any]:
        return [
            ValueDrift(column=c, method=self.methods[c], threshold=self.thresholds[c])
            for c in self.tested
        ]

    @staticmethod
    def _guard(f: Feature, column: pd.Series) -> Any:
        values = column.dropna().unique().tolist()
        if f.numeric and values:
            value = float(values[0])
            return OutRangeValueCount(column=f.name, left=value, right=value)
        return OutListValueCount(column=f.name, values=[str(v) for v in values])

    def _dataset(self, current: pd.DataFrame) -> Dataset:
        missing = [name for name in self.features if name not in current.columns]
        if missing:
            raise ValueError(f"window lacks columns: {missing}")
        return Dataset.from_pandas(current[list(self.features)], data_definition=self.definition)

    def _read(self, result: dict[str, Any], n_current: int) -> dict[str, FeatureDrift]:
        failed = {
            t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
            for t in result["tests"]
            if t["metric_config"]["params"]["type"].endswith(":ValueDrift")
        }
        verdicts: dict[str, FeatureDrift] = {}
        for metric in result["metrics"]:
            config = metric["config"]
            name, kind = config["column"], self.features[config["column"]].kind
            if config["type"].endswith(":ValueDrift"):
                verdicts[name] = FeatureDrift(
                    kind=kind,
                    method=config["method"],
                    score=float(metric["value"]),
                    threshold=float(config["threshold"]),
                    drifted=failed[name],
                )
            elif config["type"].endswith(_GUARDS):
                count = float(metric["value"]["count"])
                limit = guard_limit(n_current, self.n_reference)
                verdicts[name] = FeatureDrift(
                    kind=kind,
                    method=CONSTANT_GUARD,
                    score=count,
                    threshold=limit,
                    drifted=count > limit,
                )
        return verdicts


def guard_limit(n_current: int, n_reference: int) -> float:
    """The most values other than a constant's that a window of `n_current` rows may hold: its
    reference of `n_reference` rows bounds their rate (95 %), and more than this many would have
    a tail probability under GUARD_ALPHA at that rate."""
    rate = 1 - 0.05 ** (1 / max(n_reference, 1))
    return float(binom.isf(GUARD_ALPHA, max(n_current, 1), rate))


def _severity(
    share: float, constant_broken: bool, warning: float, critical: float
) -> Severity | None:
    if share >= critical:
        return "critical"
    if share >= warning or constant_broken:
        return "warning"
    return None


def check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    *,
    warning: float = WARNING,
    critical: float = CRITICAL,
    overrides: Overrides | None = None,
) -> DriftResult:
    """One window's drift against the reference (a monitor keeps a ``DriftChecker`` instead)."""
    checker = DriftChecker(
        reference, profile, warning=warning, critical=critical, overrides=overrides
    )
    return checker.check(current)


def report_html(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    *,
    warning: float = WARNING,
    critical: float = CRITICAL,
    overrides: Overrides | None = None,
) -> bytes:
    """Evidently's self-contained HTML report of one window (see ``DriftChecker.html``)."""
    checker = DriftChecker(
        reference, profile, warning=warning, critical=critical, overrides=overrides
    )
    return checker.html(current)

"""How ``ml.drift`` chooses and configures Evidently's tests per column (see ``ml.drift``).

Methods (measured in ``bench/drift_window.py``):

* constant columns are not tested (no reference spread). ``ml.drift`` guards them instead.
* discrete: two values -> ``z`` (two-sample proportion test); more, numeric -> ``ks`` (valid for
  ordinal counts, conservative with ties); non-numeric -> ``chisquare``. In same-distribution
  digits windows of 200 rows, Evidently's ``chisquare`` (a goodness-of-fit test against the
  reference sample: sparse pixel levels, and a level unseen in the reference gives p = 0)
  flagged 32 % of the columns at 0.05, ``psi`` and ``jensenshannon`` 53 % and 65 % at their
  0.1 (a fixed distance threshold whose false-alarm rate falls with the window size); ``ks``
  1 %. Binary (a one-off check, not in the bench: p = 0.3, 1,000 reference rows, 300 windows
  of 200, level 0.01): ``z`` flagged 0.7 % unshifted and 35 % at p = 0.38, ``ks`` 0 % and 9 %.
* continuous: ``ks``. On breast_cancer (no ties) ``ks``, ``anderson`` and ``cramer_von_mises``
  all flagged < 1 % of the columns at 0.05, but with ties (digits) Evidently's
  ``cramer_von_mises`` flagged every column and ``anderson`` 8 % (and its p-values are clipped
  to [0.001, 0.25]); the distances flagged 48-51 % at 0.1.

The p-value threshold of the default tests is one ``alpha`` per window: the largest per-column
level at which, for independent columns, a same-distribution window reaches the ``warning`` share
with probability at most ``FALSE_ALARM_TARGET``. Overrides (per column, or per kind) replace the
method and/or the threshold; an overridden method without a threshold gets Evidently's default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, TypedDict

import pandas as pd
from evidently.legacy.calculations.stattests.registry import (
    StatTestInvalidFeatureTypeError,
    get_registered_stattest,
)
from evidently.legacy.core import ColumnType
from scipy.stats import beta

Kind = Literal["constant", "discrete", "continuous"]
KINDS: tuple[Kind, ...] = ("constant", "discrete", "continuous")

WARNING = 0.1  # seed 004: drift_score warning
FALSE_ALARM_TARGET = 0.01
DISCRETE_MAX_UNIQUE = 20  # as ml.prepare: at most this many integral values is "discrete"
P_VALUE_TESTS = frozenset({"ks", "z", "chisquare"})


class ColumnOverride(TypedDict, total=False):
    method: str
    threshold: float


Overrides = Mapping[str, ColumnOverride]  # key: a column name, or a kind for all its columns


class Feature(NamedTuple):
    name: str
    kind: Kind
    n_unique: int
    numeric: bool


def infer_kind(column: pd.Series) -> Kind:
    values = column.dropna()
    n = int(values.nunique())
    if n <= 1:
        return "constant"
    if not is_number(values):
        return "discrete"
    integral = bool((values == values.round()).all())
    return "discrete" if integral and n <= DISCRETE_MAX_UNIQUE else "continuous"


def infer_profile(reference: pd.DataFrame) -> dict[str, Any]:
    """A profile in the data-preparation step's shape, for callers that have none."""
    features = []
    for name in reference.columns:
        col = reference[name]
        stats = col.agg(["mean", "std", "min", "max"]) if is_number(col) else {}
        features.append(
            {"name": str(name), "kind": infer_kind(col), "n_unique": int(col.nunique())}
            | {k: float(v) for k, v in dict(stats).items()}
        )
    return {"features": features}


def features(profile: Mapping[str, Any], reference: pd.DataFrame | None = None) -> list[Feature]:
    """The profile's features (a list of ``{"name": ...}`` or a ``{name: stats}`` mapping)."""
    raw = profile["features"]
    entries = [(str(f["name"]), f) for f in raw] if isinstance(raw, list) else list(raw.items())
    if reference is not None:
        missing = [n for n, _ in entries if n not in reference.columns]
        if missing:
            raise ValueError(f"profile features missing from the reference: {missing}")
    return [_feature(name, stats, reference) for name, stats in entries]


def _feature(name: str, stats: Mapping[str, Any], reference: pd.DataFrame | None) -> Feature:
    column = reference[name] if reference is not None else None
    kind = stats.get("kind")
    if kind not in KINDS:
        if column is None:
            raise ValueError(f"feature {name!r} has no kind and no reference to infer it from")
        kind = infer_kind(column)
    if column is not None:
        return Feature(name, kind, int(column.nunique()), is_number(column))
    numeric = isinstance(stats.get("mean"), int | float)
    return Feature(name, kind, int(stats.get("n_unique", 0)), numeric)


def is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _override(overrides: Overrides | None, f: Feature) -> ColumnOverride:
    if not overrides:
        return {}
    return {**overrides.get(f.kind, {}), **overrides.get(f.name, {})}


def default_method(f: Feature) -> str | None:
    if f.kind == "constant":
        return None
    if f.kind == "discrete" and f.n_unique <= 2:
        return "z"
    return "ks" if f.numeric else "chisquare"


def choose_methods(
    profile: Mapping[str, Any],
    overrides: Overrides | None = None,
    *,
    reference: pd.DataFrame | None = None,
) -> dict[str, str | None]:
    """The Evidently method of each column; None for a constant one (guarded, not tested: an
    override does not make a constant testable)."""
    chosen: dict[str, str | None] = {}
    for f in features(profile, reference):
        method = _override(overrides, f).get("method")
        chosen[f.name] = (
            method if method is not None and f.kind != "constant" else default_method(f)
        )
    return chosen


def per_column_alpha(n_tested: int, warning: float = WARNING) -> float:
    """Largest alpha with P(Binomial(n_tested, alpha) >= warning share) <= FALSE_ALARM_TARGET.

    That tail equals the regularized incomplete beta I_alpha(k, n - k + 1), hence the quantile.
    """
    if n_tested == 0:
        return 0.05
    k = max(1, math.ceil(round(warning * n_tested, 9)))  # round: 0.1 * 30 is 3.0000000000000004
    return min(0.05, float(beta.ppf(FALSE_ALARM_TARGET, k, n_tested - k + 1)))


def choose_thresholds(
    profile: Mapping[str, Any],
    methods: Mapping[str, str | None],
    overrides: Overrides | None = None,
    *,
    warning: float = WARNING,
    reference: pd.DataFrame | None = None,
) -> dict[str, float]:
    """The drift threshold of each tested column (p-value level or distance)."""
    alpha = per_column_alpha(sum(m is not None for m in methods.values()), warning)
    thresholds: dict[str, float] = {}
    for f in features(profile, reference):
        method = methods[f.name]
        if method is None:
            continue
        given = _override(overrides, f).get("threshold")
        if given is not None:
            thresholds[f.name] = float(given)
        elif method in P_VALUE_TESTS:
            thresholds[f.name] = alpha
        else:
            thresholds[f.name] = _stattest(method, f).default_threshold
    return thresholds


def column_type(method: str | None, f: Feature) -> ColumnType:
    if not f.numeric:
        return ColumnType.Categorical
    if method is None:
        return ColumnType.Numerical
    try:
        get_registered_stattest(method, ColumnType.Numerical)
    except StatTestInvalidFeatureTypeError:
        return ColumnType.Categorical  # a test only Evidently's categorical columns accept
    return ColumnType.Numerical


def _stattest(method: str, f: Feature) -> Any:
    return get_registered_stattest(method, column_type(method, f))

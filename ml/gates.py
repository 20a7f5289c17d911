"""Gate records, and the ``data_drift`` gate (no torch). The gate compares the holdout with the
training inputs, so it needs no model: the training step measures it in a process of its own
beside the torch child that trains (Evidently's import alone takes ~10 s here), and validation
judges it at its threshold (``at_share``) and merges it into its report (``with_drift``)."""

from __future__ import annotations

import importlib
from typing import Any

from ml.prepare import Snapshot

DRIFT_SHARE = 0.3  # seed 004's critical drift score


def gate(
    name: str, passed: bool, value: Any, threshold: Any, baseline: Any, detail: str
) -> dict[str, Any]:
    return {
        "gate": name,
        "passed": bool(passed),
        "value": value,
        "threshold": threshold,
        "baseline": baseline,
        "detail": detail,
    }


def drift_gate(snapshot: Snapshot, share: float = DRIFT_SHARE) -> dict[str, Any]:
    """``ml.drift.check`` of the holdout vs the training inputs: passed at a share <= ``share``."""
    import pandas as pd

    drift = importlib.import_module("ml.drift")  # Evidently and pandas: only when the gate runs
    reference = pd.DataFrame(snapshot.X_train, columns=snapshot.feature_names)
    current = pd.DataFrame(snapshot.X_holdout, columns=snapshot.feature_names)
    result = drift.check(reference, current, snapshot.profile)
    value = float(result.share_drifted)
    detail = f"holdout vs training inputs; drifted: {list(result.drifted)[:10]}"
    return gate("data_drift", value <= share, value, share, None, detail)


def at_share(measured: dict[str, Any], share: float) -> dict[str, Any]:
    """A data_drift gate measured under another threshold, judged at ``share``."""
    return {**measured, "passed": bool(measured["value"] <= share), "threshold": share}


def with_drift(report: dict[str, Any], drift: dict[str, Any]) -> dict[str, Any]:
    """A report made without the drift gate, with ``drift`` in it: as one report made with it (a
    candidate that failed the security scan has it skipped, like every other gate)."""
    skipped = [s for s in report["skipped"] if s != "data_drift"]
    if any(g["gate"] == "security_scan" and not g["passed"] for g in report["gates"]):
        return {**report, "skipped": [*skipped, "data_drift"]}
    return {
        **report,
        "gates": [*report["gates"], drift],
        "passed": bool(report["passed"] and drift["passed"]),
        "skipped": skipped,
    }

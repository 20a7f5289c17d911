"""Projection of monitoring events into rm_drift_checks (one row per checked window, with its
severity and report once detected), rm_accuracy_windows and rm_monitoring_policies."""

from __future__ import annotations

from projections.ops import Event, Insert, Op, Projection, Update

CHECKS, ACCURACY, POLICIES = "rm_drift_checks", "rm_accuracy_windows", "rm_monitoring_policies"


def _key(e: Event) -> str:
    p = e.payload
    return f"{p['model_name']}/{p['version']}/{p['window_id']}"


def drift_checked(e: Event) -> list[Op]:
    p = e.payload
    row = {
        "check_key": _key(e),
        "model_name": p["model_name"],
        "version": p["version"],
        "window_id": p["window_id"],
        "score": p["score"],
        "severity": p["severity"],
        "per_feature": p["per_feature"],
        "drifted": p["drifted"],
        "bounds": p["bounds"],
        "method": p["method"],
        "detected_event_id": None,
        "report_sha256": None,
        "retraining": None,
        "checked_at": e.occurred_at,
    }
    return [Insert(CHECKS, row)]


def drift_detected(e: Event) -> list[Op]:
    return [
        Update(
            CHECKS,
            "check_key",
            _key(e),
            set={"report_sha256": e.payload["report_sha256"], "detected_event_id": e.event_id},
        )
    ]


def retraining_triggered(e: Event) -> list[Op]:
    p = e.payload
    if p["drift_event_id"] is None:
        return []
    return [
        Update(
            CHECKS,
            "check_key",
            _key(e),
            set={"retraining": {"event_id": e.event_id, "reason": p["reason"]}},
        )
    ]


def accuracy_recorded(e: Event) -> list[Op]:
    p = e.payload
    row = {
        "window_key": _key(e),
        "model_name": p["model_name"],
        "version": p["version"],
        "window_id": p["window_id"],
        "n": p["n"],
        "correct": p["correct"],
        "accuracy": p["accuracy"],
        "validation_accuracy": p["validation_accuracy"],
        "dropped": False,
        "recorded_at": e.occurred_at,
    }
    return [Insert(ACCURACY, row)]


def accuracy_dropped(e: Event) -> list[Op]:
    return [Update(ACCURACY, "window_key", _key(e), set={"dropped": True})]


def policy_set(e: Event) -> list[Op]:
    p = e.payload
    return [
        Insert(
            POLICIES,
            {
                "policy_key": f"{p['model_name']}/{e.version}",
                "model_name": p["model_name"],
                "policy": p["policy"],
                "set_by": p["set_by"],
                "set_at": e.occurred_at,
            },
        )
    ]


PROJECTIONS: dict[str, Projection] = {
    "DriftChecked": drift_checked,
    "DriftDetected": drift_detected,
    "RetrainingTriggered": retraining_triggered,
    "AccuracyRecorded": accuracy_recorded,
    "AccuracyDropped": accuracy_dropped,
    "MonitoringPolicySet": policy_set,
}

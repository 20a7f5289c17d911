"""The Monitor aggregate: one per model, the drift monitor's and the policy's event-sourced state.
Its invariants keep the record honest whatever the monitor sends: window ids per version are
contiguous (a repeat is refused as a duplicate, a gap as a gap), and a retraining is triggered
only by the policy in force and at most once per cooldown."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from domain.base import Aggregate, Meta, aggregate_id
from domain.errors import AlreadyExists, InvariantViolation
from events.base import DomainEvent
from events.envelope import EventEnvelope
from events.monitoring import (
    AccuracyDropped,
    AccuracyRecorded,
    DriftChecked,
    DriftDetected,
    MonitoringPolicySet,
    RetrainingTriggered,
)

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "window_size": 200,
    "window_max_age_s": None,
    "window_min_rows": 50,
    "warning": 0.1,
    "critical": 0.3,
    "tests": {},
    "accuracy_window": 100,
    "accuracy_factor": 0.9,
    "retrain_on": "never",
    "cooldown_s": 3600.0,
}


def monitor_id(model_name: str) -> UUID:
    return aggregate_id("monitor", model_name)


class Monitor(Aggregate):
    aggregate_type = "Monitor"
    context = "monitoring"

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.model_name = ""
        self.policy: dict[str, Any] = dict(DEFAULTS)
        self.drift_windows: dict[str, int] = {}  # last checked window id per version
        self.accuracy_windows: dict[str, int] = {}
        self.last_trigger_at: datetime | None = None

    # -- invariants -------------------------------------------------------------------------------

    @staticmethod
    def check_next(kind: str, last: int, window_id: int, version: str) -> None:
        if window_id <= last:
            raise AlreadyExists(
                f"{kind} window {window_id} of version {version} is already recorded (last: {last})"
            )
        if window_id != last + 1:
            raise InvariantViolation(
                f"{kind} window {window_id} of version {version} would leave a gap after {last}",
                "window_gap",
            )

    def check_retrain(self, reason: str, now: datetime) -> bool:
        """Whether the policy in force retrains now for `reason`: retrain_on covers it and the
        cooldown since the last trigger has passed (a storm of windows starts one run)."""
        wanted = {"critical_drift": ("critical", "critical_or_accuracy")}.get(
            reason, ("critical_or_accuracy",)
        )
        if self.policy["retrain_on"] not in wanted:
            return False
        if self.last_trigger_at is None:
            return True
        return now >= self.last_trigger_at + timedelta(seconds=float(self.policy["cooldown_s"]))

    # -- commands ---------------------------------------------------------------------------------

    def set_policy(self, model_name: str, policy: dict[str, Any], meta: Meta) -> None:
        self.record(
            MonitoringPolicySet(model_name=model_name, policy=policy, set_by=meta.actor), meta
        )

    def record_drift(
        self, check: dict[str, Any], training: dict[str, Any] | None, meta: Meta
    ) -> None:
        version, window = check["version"], check["window_id"]
        self.check_next("drift", self.drift_windows.get(version, 0), window, version)
        report = check.pop("report_sha256", None)
        self.record(DriftChecked(**check), meta)
        if check["severity"] is None:
            return
        fields = {k: v for k, v in check.items() if k != "method"}
        self.record(DriftDetected(**fields, report_sha256=report), meta)
        drift_event = str(self.pending[-1].event_id)
        if (
            check["severity"] == "critical"
            and training
            and self.check_retrain("critical_drift", meta.occurred_at)
        ):
            self._trigger(check, "critical_drift", training, meta, drift_event, None, report)

    def record_accuracy(
        self,
        fields: dict[str, Any],
        validation_accuracy: float | None,
        training: dict[str, Any] | None,
        meta: Meta,
    ) -> None:
        version, window = fields["version"], fields["window_id"]
        self.check_next("accuracy", self.accuracy_windows.get(version, 0), window, version)
        accuracy = fields["correct"] / fields["n"]
        self.record(
            AccuracyRecorded(**fields, accuracy=accuracy, validation_accuracy=validation_accuracy),
            meta,
        )
        factor = float(self.policy["accuracy_factor"])
        if validation_accuracy is None or accuracy >= factor * validation_accuracy:
            return
        self.record(
            AccuracyDropped(
                model_name=fields["model_name"],
                version=version,
                window_id=window,
                accuracy=accuracy,
                validation_accuracy=validation_accuracy,
                factor=factor,
            ),
            meta,
        )
        dropped = str(self.pending[-1].event_id)
        if training and self.check_retrain("accuracy_drop", meta.occurred_at):
            self._trigger(fields, "accuracy_drop", training, meta, None, dropped, None)

    def _trigger(
        self,
        window: dict[str, Any],
        reason: str,
        training: dict[str, Any],
        meta: Meta,
        drift_event: str | None,
        accuracy_event: str | None,
        report: str | None,
    ) -> None:
        self.record(
            RetrainingTriggered(
                model_name=self.model_name or training.get("model_name", ""),
                version=window["version"],
                window_id=window["window_id"],
                reason=reason,
                drift_event_id=drift_event,
                accuracy_event_id=accuracy_event,
                report_sha256=report,
                training=training,
                cooldown_s=float(self.policy["cooldown_s"]),
            ),
            meta,
        )

    # -- state ------------------------------------------------------------------------------------

    def apply(self, event: DomainEvent, env: EventEnvelope) -> None:
        match event:
            case MonitoringPolicySet():
                self.model_name, self.policy = event.model_name, {**DEFAULTS, **event.policy}
            case DriftChecked():
                self.model_name = event.model_name
                self.drift_windows[event.version] = event.window_id
            case AccuracyRecorded():
                self.model_name = event.model_name
                self.accuracy_windows[event.version] = event.window_id
            case RetrainingTriggered():
                self.last_trigger_at = env.occurred_at

"""The Deployment context on the in-memory store (commands, invariants, the registry change a
promotion makes), the deployment saga's decisions, the serving plan folded from events, the
canary count, and the controller's translations of replica reports and lag."""

from __future__ import annotations

from typing import Any

import pytest

from domain.serving import deployment_id
from events.envelope import EventEnvelope
from sagas import deployment as saga
from sagas.serving_plan import CanaryCount, Plan, Rollout, p95
from tests.unit import harness
from tests.unit.harness import Harness, assert_rejected
from workers.serving_specs import report_command, scale_decision

harness.USERS.setdefault("svc", ["service"])


@pytest.fixture
def h() -> Harness:
    h = Harness(settings=harness.SETTINGS.model_copy(update={"serving_fault_injection": True}))
    h.register_model()
    for v in ("1.0.0", "1.1.0"):
        h.register_version(v)
    h.promote("1.0.0")
    return h


def _start(h: Harness, version: str = "1.1.0", **extra: Any) -> Any:
    return h.send("erin", "StartDeployment", {"model_name": "fraud", "version": version, **extra})


def test_a_rollout_needs_an_approval_a_stable_version_and_no_other_rollout(h: Harness) -> None:
    assert_rejected(_start(h), "invariant_violation", "approval_required")
    sub = h.submit("1.1.0", stage="staging")
    assert h.approve(sub, "bob").status == "accepted"
    started = _start(h, min_canary_requests=10)
    assert h.types_of(started) == ["DeploymentStarted", "CanaryStarted"]
    payload = h.events_of(started)[0][2]
    assert payload["from_version"] == "1.0.0" and payload["canary_share"] == 0.05
    assert_rejected(_start(h), "invariant_violation", "deployment_in_progress")
    assert_rejected(_start(h, "1.0.0"), "invariant_violation", "deployment_in_progress")


def test_promotion_without_production_approval_is_refused_in_an_event(h: Harness) -> None:
    assert h.approve(h.submit("1.1.0", stage="staging"), "bob").status == "accepted"
    _start(h)
    out = h.ok("svc", "PromoteCanary", {"model_name": "fraud", "version": "1.1.0"})
    assert h.types_of(out) == ["PromotionRefused", "CanaryRolledBack"]
    assert h.events_of(out)[0][2]["reason_code"] == "approval_required"
    assert_rejected(
        h.send("svc", "PromoteCanary", {"model_name": "fraud", "version": "1.1.0"}),
        "invariant_violation",
        "no_open_canary",
    )


def test_an_approved_promotion_changes_the_registry_in_the_same_transaction(h: Harness) -> None:
    h.approved_for_production("1.1.0")
    _start(h, faults={"error": True})
    out = h.ok("svc", "PromoteCanary", {"model_name": "fraud", "version": "1.1.0"})
    types = h.types_of(out)
    assert {"CanaryPromoted", "ProductionVersionChanged"} <= set(types)
    assert types.count("StageTransitioned") == 2  # 1.1.0 to production, 1.0.0 archived


def test_faults_need_the_setting_and_service_commands_the_service_role(h: Harness) -> None:
    h.settings = harness.SETTINGS
    h.approved_for_production("1.1.0")
    assert_rejected(_start(h, faults={"delay_ms": 5}), "invariant_violation", "faults_disabled")
    refused = {"model_name": "fraud", "version": "1.1.0", "slot": "production", "reason": "bad_signature"}  # fmt: skip
    assert h.send("erin", "RecordLoadRefused", refused).reason_code == "forbidden"
    assert h.types_of(h.ok("svc", "RecordLoadRefused", refused)) == ["LoadRefused"]
    served = {"model_name": "fraud", "slot": "production", "version": "1.0.0"}
    assert h.types_of(h.ok("svc", "RecordServedVersion", served)) == ["ServedVersionChanged"]
    assert h.types_of(h.ok("svc", "RecordServedVersion", served)) == []  # a repeat: nothing


ROLLOUT = saga.Rollout(
    "m",
    "1.1.0",
    "canary",
    {"max_error_rate_increase": 0.02, "max_p95_ratio": 2.0, "p95_slack_ms": 25.0},
    100,
)


def _measured(c_err: float, c95: float | None, n: int = 100) -> dict[str, Any]:
    return {
        "stable_version": "1.0.0",
        "canary": {"requests": n, "errors": int(c_err * n), "error_rate": c_err, "p95_ms": c95},
        "stable": {"requests": 900, "errors": 0, "error_rate": 0.0, "p95_ms": 10.0},
    }


@pytest.mark.parametrize(
    ("c_err", "c95", "n", "want"),
    [
        (0.0, 12.0, 100, ("PromoteCanary", None)),
        (0.01, 44.0, 150, ("PromoteCanary", None)),
        (0.05, 12.0, 100, ("RollBackCanary", "error_rate")),
        (1.0, None, 100, ("RollBackCanary", "error_rate")),
        (0.0, 46.0, 100, ("RollBackCanary", "p95_latency")),
        (0.0, 12.0, 99, None),  # not enough canary requests yet
    ],
)
def test_the_saga_promotes_within_thresholds_and_rolls_back_a_regression(
    c_err: float, c95: float | None, n: int, want: tuple[str, str | None] | None
) -> None:
    cmd = saga.decide(ROLLOUT, _measured(c_err, c95, n))
    if want is None:
        assert cmd is None
        return
    assert cmd is not None and cmd.type == want[0]
    assert cmd.payload.get("reason") == want[1] if want[1] else "reason" not in cmd.payload
    assert cmd.payload["measured"]["canary"]["requests"] == n  # the numbers travel with it


def _env(etype: str, payload: dict[str, Any], agg: str = "a", version: int = 1) -> EventEnvelope:
    from domain.base import aggregate_id
    from events.envelope import seal

    return seal(
        {
            "event_id": "00000000-0000-0000-0000-00000000000" + str(version),
            "type": etype, "schema_version": 1, "aggregate_type": "X",
            "aggregate_id": aggregate_id("t", agg), "version": version,
            "occurred_at": "2026-12-02T12:00:00Z", "actor": "a", "correlation_id": "c",
            "causation_id": "c", "payload": payload, "prev_hash": "0" * 64,
        }
    )  # fmt: skip


def test_the_plan_follows_production_and_the_canary_from_events_alone() -> None:
    plan = Plan()
    art = {"sha256": "a" * 64, "signature": "s"}
    plan.apply(_env("ModelRegistered", {"name": "m"}, "model"))
    for i, v in enumerate(("1.0.0", "1.1.0")):
        plan.apply(_env("ModelVersionRegistered", {"model_name": "m", "version": v, "artifact": art}, v))  # fmt: skip
        plan.apply(_env("VersionApproved", {"target_stage": "staging" if i else "production"}, v))
    plan.apply(_env("ProductionVersionChanged", {"version": "1.0.0"}, "model"))
    started = {"model_name": "m", "version": "1.1.0", "from_version": "1.0.0", "canary_share": 0.1, "min_canary_requests": 5, "faults": None}  # fmt: skip
    plan.apply(_env("DeploymentStarted", started, "dep"))
    t = plan.targets()["m"]
    assert t["production"].info.version == "1.0.0" and t["production"].stage == "production"
    assert t["canary"].info.version == "1.1.0" and t["canary"].stage == "staging"
    plan.apply(_env("CanaryRolledBack", {"model_name": "m"}, "dep"))
    plan.apply(_env("ProductionRolledBack", {"to_version": "0.9.0"}, "model"))
    t = plan.targets()["m"]
    assert t["canary"] is None and t["production"] is None  # 0.9.0 was never registered here


def test_the_canary_count_measures_once_with_error_rate_and_p95() -> None:
    count = CanaryCount("m", Rollout("1.1.0", "1.0.0", 0.1, 3, None))
    for ms in (5.0, 6.0):
        count.add({"model_version": "1.1.0", "latency_ms": ms})
        assert count.measurement() is None
    count.add({"model_version": "1.1.0", "reason_code": "internal_error"})
    count.add({"model_version": "1.0.0", "latency_ms": 1.0})
    count.add({"model_version": None, "reason_code": "schema_violation"})  # nobody's
    got = count.measurement()
    assert got is not None and got["canary"] == {"requests": 3, "errors": 1, "p95_ms": 6.0}
    assert got["stable"]["requests"] == 1 and count.measurement() is None
    assert p95([float(i) for i in range(1, 101)]) == 95.0


def test_replica_reports_become_commands_whose_repeats_share_an_id() -> None:
    refused = {"kind": "load_refused", "model_name": "m", "slot": "production", "version": "2.0.0", "reason": "sha256_mismatch", "detail": "x", "still_serving": "1.0.0", "origin": "r1"}  # fmt: skip
    a, b = report_command(refused, "run/3"), report_command({**refused, "origin": "r2"}, "run/3")
    assert a is not None and b is not None and a[0] == b[0]
    assert a[1].type == "RecordLoadRefused" and a[1].payload["reason"] == "sha256_mismatch"
    swap = report_command({"kind": "serving", "model_name": "m", "slot": "canary", "version": None}, "run/3")  # fmt: skip
    assert swap is not None and swap[1].type == "RecordServedVersion"
    assert report_command({"kind": "config_invalid", "detail": "x"}, "run/3") is None
    assert scale_decision(10, 1, 5, 2) == 2 and scale_decision(10, 2, 5, 2) is None
    assert scale_decision(5, 1, 5, 2) is None
    assert deployment_id("m") == deployment_id("m")


def test_a_refused_production_version_is_not_asked_for_again() -> None:
    plan = Plan()
    art = {"sha256": "a" * 64, "signature": "s"}
    plan.apply(_env("ModelRegistered", {"name": "m"}, "model"))
    for v in ("1.0.0", "2.0.0"):
        plan.apply(_env("ModelVersionRegistered", {"model_name": "m", "version": v, "artifact": art}, v))  # fmt: skip
    plan.apply(_env("ProductionVersionChanged", {"version": "1.0.0"}, "model"))
    plan.apply(_env("ServedVersionChanged", {"model_name": "m", "slot": "production", "version": "1.0.0"}, "dep"))  # fmt: skip
    plan.apply(_env("ProductionVersionChanged", {"version": "2.0.0"}, "model"))
    assert plan.targets()["m"]["production"].info.version == "2.0.0"
    plan.apply(_env("LoadRefused", {"model_name": "m", "version": "2.0.0", "slot": "production"}, "dep"))  # fmt: skip
    assert plan.targets()["m"]["production"].info.version == "1.0.0"  # what the replicas kept

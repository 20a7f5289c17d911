"""serving.control without starting Ray: the declarative config, GPU requests, the pinned API."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from serving import control


def _deployment(app: dict[str, Any]) -> dict[str, Any]:
    deployments: list[dict[str, Any]] = app["deployments"]
    return deployments[0]


def test_replicas_ask_for_a_gpu_only_when_ray_sees_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    for gpus, expected in ((0.0, 0.0), (2.0, 1.0)):
        monkeypatch.setattr(control, "_cluster_gpus", lambda g=gpus: g)
        app = control.application({}, {"models": {}}, control.Scaling())
        assert _deployment(app)["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": expected}
    fixed = control.application({}, {}, control.Scaling(replica_gpus=0.25))
    assert _deployment(fixed)["ray_actor_options"]["num_gpus"] == 0.25


def test_replica_count_or_autoscaling_bounds_and_the_config_digest() -> None:
    cfg = {"models": {"m": {"production": None}}}
    fixed = _deployment(control.application({}, cfg, control.Scaling(num_replicas=3, replica_gpus=0)))  # fmt: skip
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["user_config"] == {**cfg, "digest": control.config_digest(cfg)}
    auto = _deployment(control.application({}, cfg, control.Scaling(min_replicas=1, max_replicas=4, replica_gpus=0)))  # fmt: skip
    assert auto["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in auto
    app = control.application({"ingress": None}, cfg, control.Scaling(replica_gpus=0))
    assert app["import_path"] == "serving.app:build" and app["route_prefix"] is None


def test_the_private_serve_api_that_control_uses_is_there_on_the_pinned_ray() -> None:
    import ray
    from ray.serve._private.client import ServeControllerClient
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    assert ray.__version__ == control.TESTED_RAY
    assert list(inspect.signature(ServeControllerClient.deploy_apps).parameters)[:2] == ["self", "config"]  # fmt: skip
    assert callable(_get_global_client)
    app = control.application({}, {}, control.Scaling(replica_gpus=0))
    schema = ServeDeploySchema.model_validate({"proxy_location": "Disabled", "applications": [app]})
    assert schema.applications[0].deployments[0].name == "ModelServer"


def test_start_ray_refuses_another_ray_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "__version__", "9.9.9")
    monkeypatch.setattr(control, "_token", lambda p: pytest.fail("the version is checked first"))
    with pytest.raises(RuntimeError, match=r"tested on Ray 2\.60\.0"):
        control.start_ray(control.RayOptions(token_path="/nonexistent"))

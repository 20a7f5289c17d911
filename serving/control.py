"""The driver side: start Ray, deploy the app, change what is served (no torch).

Everything is deployed declaratively (``ServeControllerClient.deploy_apps`` with a
``ServeDeploySchema``, the path ``serve deploy`` takes), because only that path applies a change
of ``user_config`` alone as a lightweight in-place ``reconfigure``; ``serve.run`` with a new
``user_config`` replaced the replica (13 s, 12 s without answers). ``deploy_apps`` and
``serve.context._get_global_client`` are private, so Ray is pinned to ``TESTED_RAY`` (pyproject)
and ``start_ray`` refuses another version unless ``RayOptions(allow_any_ray=True)``; the integration
tests exercise the path.

Ray 2.60 facts, as measured here: a new local cluster has token authentication on by default;
``start_ray`` keeps it on (``RAY_AUTH_MODE=token``) with its own token file
(``RAY_AUTH_TOKEN_PATH``, made 0600 when absent) instead of writing ``~/.ray/auth_token``; clients
of an existing cluster need the same token (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``). The
GCS, raylet, object manager and worker gRPC servers listen on every interface (``*``) even with
``node_ip_address=127.0.0.1``, so the token (and a firewall) is what keeps others out.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TESTED_RAY = "2.60.0"
APP = "veritas-serving"
IMPORT_PATH = "serving.app:build"


@dataclass(frozen=True)
class RayOptions:
    num_cpus: int = 2
    object_store_memory: int = 200 * 2**20
    temp_dir: str = "/tmp/ray-veritas"  # short: Ray's socket paths must fit in 107 bytes
    token_path: str = "var/ray/auth_token"
    node_ip_address: str = "127.0.0.1"
    # An existing cluster (its token: RAY_AUTH_TOKEN, or the file at token_path); None: start one.
    address: str | None = None
    # Another Ray than TESTED_RAY: the private deploy path may have changed there (the caller maps
    # this from its settings; this package reads no environment variable of ours).
    allow_any_ray: bool = False
    # A local head without the autoscaler monitor, the log monitor and the API server.
    lean_head: bool = True


def _lean_head() -> None:
    """One local node never scales, its logs stay in files (log_to_driver=False) and Serve is
    deployed through its controller actor, so its head needs neither the autoscaler monitor, nor
    the log monitor, nor the API server that include_dashboard=False still starts (about 290 MiB
    together). Ray 2.60's ray.init does not expose RayParams' no_monitor / include_log_monitor
    (`ray start` does): the head Node is given them as it is built, and its API server is left
    out as Ray leaves out one that failed to start (the private API is pinned by TESTED_RAY, as
    deploy_apps is)."""
    from ray._private import node

    original = node.Node.__init__
    if getattr(original, "veritas_lean", False):
        return

    def init(self: Any, ray_params: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("head", args[0] if args else False):
            ray_params.no_monitor = True
            ray_params.include_log_monitor = False
        original(self, ray_params, *args, **kwargs)

    def no_api_server(self: Any, **_: Any) -> None:
        # What Ray does when the API server fails to start and it is not required: no web UI.
        # Serve is deployed through its controller actor, never through that REST API.
        self._webui_url = None

    init.veritas_lean = True  # type: ignore[attr-defined]
    node.Node.__init__ = init  # type: ignore[method-assign]
    node.Node.start_api_server = no_api_server  # type: ignore[method-assign]


def _token(path: Path) -> Path:
    path = path.resolve()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def start_ray(options: RayOptions | None = None) -> dict[str, Any]:
    """Start (or join) Ray with token auth and bounded resources, then Serve without a proxy."""
    opts = options or RayOptions()
    started = time.perf_counter()
    import ray
    from ray import serve
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    if ray.__version__ != TESTED_RAY and not opts.allow_any_ray:
        raise RuntimeError(
            f"serving uses Serve's private deploy_apps path, tested on Ray {TESTED_RAY}; "
            f"this is Ray {ray.__version__} (RayOptions(allow_any_ray=True) to try anyway)"
        )
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "token"
    if opts.address is None:  # a new local cluster: its token is ours (made when absent)
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(_token(Path(opts.token_path)))
    elif "RAY_AUTH_TOKEN" not in os.environ and Path(opts.token_path).exists():
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(Path(opts.token_path).resolve())
    # Ray reads RAY_AUTH_MODE into a cached config at import: refresh it, or this process (Ray
    # imported before the variables were set) would talk to a token-mode GCS without the token.
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    if opts.address is not None:
        ray.init(address=opts.address, log_to_driver=False)
    else:
        if opts.lean_head:
            _lean_head()
        ray.init(
            num_cpus=opts.num_cpus,
            object_store_memory=opts.object_store_memory,
            include_dashboard=False,
            _node_ip_address=opts.node_ip_address,
            _temp_dir=opts.temp_dir,
            log_to_driver=False,
        )
    ray_s = time.perf_counter() - started
    serve.start(proxy_location="Disabled", logging_config={"enable_access_log": False})
    from ray._raylet import (  # type: ignore[attr-defined]
        AuthenticationMode,
        get_authentication_mode,
    )

    return {
        "ray_version": ray.__version__,
        "ray_init_s": round(ray_s, 2),
        "serve_start_s": round(time.perf_counter() - started - ray_s, 2),
        "token_auth": get_authentication_mode() == AuthenticationMode.TOKEN,
        "gpus": _cluster_gpus(),
    }


def _cluster_gpus() -> float:
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(resources.get("GPU", 0.0))


def stop_ray() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()


@dataclass(frozen=True)
class Scaling:
    """Replica count, or autoscaling bounds (``max_replicas`` set), and each replica's resources.

    With the Kafka ingress, more replicas than ``inference.requests`` has partitions sit idle.
    ``replica_gpus`` None asks for one GPU per replica when Ray sees any, else none.
    """

    num_replicas: int = 1
    min_replicas: int = 1
    max_replicas: int | None = None
    target_ongoing_requests: float = 256.0
    replica_cpus: float = 1.0
    replica_gpus: float | None = None
    max_ongoing_requests: int = 512


def config_digest(user_config: dict[str, Any]) -> str:
    text = json.dumps(user_config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def application(
    settings: dict[str, Any], user_config: dict[str, Any], scaling: Scaling, name: str = APP
) -> dict[str, Any]:
    """The application's entry of a ``ServeDeploySchema`` (``user_config`` gets its digest)."""
    import ray

    gpus = scaling.replica_gpus
    if gpus is None:
        gpus = 1.0 if ray.is_initialized() and _cluster_gpus() > 0 else 0.0
    deployment: dict[str, Any] = {
        "name": "ModelServer",
        "user_config": {**user_config, "digest": config_digest(user_config)},
        "max_ongoing_requests": scaling.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": scaling.replica_cpus, "num_gpus": gpus},
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
        "graceful_shutdown_timeout_s": 15.0,
    }
    if scaling.max_replicas is not None:
        deployment["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
        }
    else:
        deployment["num_replicas"] = scaling.num_replicas
    return {
        "name": name,
        "route_prefix": None,
        "import_path": IMPORT_PATH,
        "args": settings,
        "deployments": [deployment],
        "logging_config": {"enable_access_log": False},
    }


def deploy_declarative(applications: list[dict[str, Any]]) -> None:
    """Submit the whole declarative config (replaces every app deployed this way)."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(
        {
            "proxy_location": "Disabled",
            "logging_config": {"enable_access_log": False},
            "applications": applications,
        }
    )
    client = _get_global_client()
    if client is None:
        raise RuntimeError("Serve is not started (serving.control.start_ray starts it)")
    client.deploy_apps(schema)


class Serving:
    """One serving application: deploy it, change what it serves, read its replicas."""

    def __init__(
        self, settings: dict[str, Any], scaling: Scaling | None = None, name: str = APP
    ) -> None:
        self.settings, self.scaling, self.name = settings, scaling or Scaling(), name
        self.user_config: dict[str, Any] = {}

    def deploy(self, user_config: dict[str, Any], timeout_s: float = 180.0) -> None:
        """Deploy (or update) with ``user_config``; returns once it is applied and healthy."""
        from ray import serve

        before = self._deployed_time()
        self.user_config = user_config
        deploy_declarative([application(self.settings, user_config, self.scaling, self.name)])
        digest = config_digest(user_config)
        self._until(lambda: self._deployed_time() > before and self._healthy(), timeout_s)
        handle = serve.get_deployment_handle("ModelServer", app_name=self.name)
        self._until(lambda: handle.status.remote().result()["digest"] == digest, timeout_s)

    def set_serving(self, user_config: dict[str, Any], timeout_s: float = 180.0) -> None:
        """Change only ``user_config``: the replicas swap in place (``reconfigure``)."""
        self.deploy(user_config, timeout_s)

    def handle(self) -> Any:
        from ray import serve

        return serve.get_deployment_handle("ModelServer", app_name=self.name)

    def replica_states(self) -> dict[str, int]:
        from ray import serve

        app = serve.status().applications.get(self.name)
        if app is None or "ModelServer" not in app.deployments:
            return {}
        states = app.deployments["ModelServer"].replica_states
        return {str(getattr(k, "value", k)): int(v) for k, v in states.items()}

    def replicas(self, calls: int = 20) -> dict[str, dict[str, Any]]:
        """Status of the replicas seen in up to ``calls`` handle calls, by replica id."""
        seen: dict[str, dict[str, Any]] = {}
        want = self.scaling.num_replicas if self.scaling.max_replicas is None else 1
        h = self.handle()
        for _ in range(calls):
            s = h.status.remote().result()
            seen[s["replica"]] = s
            if len(seen) >= want:
                break
        return seen

    def delete(self) -> None:
        from ray import serve

        serve.delete(self.name)

    def _deployed_time(self) -> float:
        from ray import serve

        app = serve.status().applications.get(self.name)
        return float(app.last_deployed_time_s) if app is not None else 0.0

    def _healthy(self) -> bool:
        from ray import serve

        app = serve.status().applications.get(self.name)
        if app is None or app.status != "RUNNING":
            return False
        dep = app.deployments.get("ModelServer")
        return dep is not None and dep.status == "HEALTHY"

    @staticmethod
    def _until(check: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"serving not ready after {timeout_s:.0f} s")
            time.sleep(0.1)


def settings_dict(**fields: Any) -> dict[str, Any]:
    """``ServerSettings`` fields as a plain dict (validated, without importing Ray here)."""
    from serving.app import ServerSettings

    return asdict(ServerSettings.from_dict(fields))

"""Facts about Ray 2.60 that ``serving`` relies on, checked on this machine.

1. Cold start of ``serving.control.start_ray`` (``ray.init`` + ``serve.start``), token auth mode.
2. The addresses Ray's processes listen on, with ``node_ip_address=127.0.0.1``.
3. Token auth is enforced: a client with a wrong token is refused, the right token connects.

``python bench/ray_facts.py`` (starts and stops its own Ray; prints JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

PROBE = (
    "import ray, sys\n"
    "try:\n"
    "    ray.init(address=sys.argv[1], log_to_driver=False)\n"
    "    print('connected', ray.cluster_resources().get('CPU'))\n"
    "except Exception as e:\n"
    "    print('refused', type(e).__name__)\n"
)


def listening() -> list[dict[str, object]]:
    out = []
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            conns = p.net_connections(kind="inet")
            cmd = p.cmdline()
            name = cmd[0] if cmd[0].startswith("ray::") else " ".join(Path(c).name for c in cmd[:3])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                out.append({"pid": p.pid, "process": name, "address": f"{c.laddr.ip}:{c.laddr.port}"})  # fmt: skip
    return out


def probe(address: str, token: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    env["RAY_AUTH_MODE"] = "token"
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    out = subprocess.run(
        [sys.executable, "-c", PROBE, address], env=env, capture_output=True, text=True, timeout=120
    )
    return (out.stdout.strip().splitlines() or ["no output: " + out.stderr[-300:]])[-1]


def main() -> None:
    import ray

    from serving import control

    t0 = time.perf_counter()
    facts: dict[str, object] = {"start": control.start_ray()}
    facts["cold_start_s"] = round(time.perf_counter() - t0, 1)
    try:
        address = ray.get_runtime_context().gcs_address
        socks = listening()
        facts["listening"] = socks
        facts["all_interfaces"] = sorted(
            {str(s["address"]) for s in socks if str(s["address"]).startswith(("0.0.0.0", "::"))}
        )
        token = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        facts["wrong_token"] = probe(address, "0" * 64)
        facts["right_token"] = probe(address, token)
    finally:
        control.stop_ray()
    text = json.dumps(facts, indent=2)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "ray_facts.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

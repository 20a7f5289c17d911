"""The Prometheus alert rules (infra/prometheus/alerts.yml): promtool accepts them where it is
installed (Debian's `prometheus` package), and every metric they name is one the services
really define (the drift monitor's gauges, the serving replicas' latency histogram)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

from config.settings import ROOT

RULES = ROOT / "infra" / "prometheus" / "alerts.yml"


def test_promtool_checks_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    out = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 3 rules found" in out.stdout


def test_seed_004_rules_name_only_exported_metrics() -> None:
    import serving.metrics as serving_metrics
    import workers.drift_monitor  # noqa: F401  (defines the monitor's gauges)

    doc = yaml.safe_load(RULES.read_text())
    rules = {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}
    assert set(rules) == {"ModelDriftDetected", "ModelAccuracyDrop", "ModelLatencyHigh"}
    assert "> 0.2" in rules["ModelDriftDetected"] and "> 1.0" in rules["ModelLatencyHigh"]
    exported = {m.name for m in REGISTRY.collect()} | {
        m.name for m in serving_metrics.REGISTRY.collect()
    }
    for expr in rules.values():
        for name in re.findall(r"veritas_[a-z_]+", expr):
            assert re.sub(r"_(bucket|sum|count)$", "", name) in exported, name

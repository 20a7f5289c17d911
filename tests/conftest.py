"""Shared fixtures. Integration and e2e tests run against a real Kafka broker and a real Postgres,
both started here by the project's own code on test ports under var/test, and stopped at the end."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from config.settings import ROOT, Settings

# TEST_SLOT lets several test sessions run side by side on one machine (ports and data differ).
_SLOT = int(os.environ.get("TEST_SLOT", "0"))
_K = 29092 + 10 * _SLOT
TEST_ENV = {
    "VERITAS_VAR_DIR": str(ROOT / "var" / f"test{_SLOT or ''}"),
    "VERITAS_KAFKA_PORT": str(_K),
    "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_K}",
    "VERITAS_PG_PORT": str(15433 + _SLOT),
    "VERITAS_API_PORT": str(18000 + _SLOT),
    # Each slot's metrics ports, its sagas' at +20 among them, in a block of their own.
    "VERITAS_METRICS_PORT_BASE": str(19101 + 50 * _SLOT),
    "VERITAS_KAFKA_HEAP": "768m",
    # Short enough for the stall test to wait seconds, not the default half minute.
    "VERITAS_HEALTH_STALL_AFTER_S": "6",
    # The training saga's tests inject failures (StartTraining.faults); off by default.
    "VERITAS_TRAINING_FAULT_INJECTION": "true",
    # Serving (Ray) only where a test starts it (tests/e2e/test_serving.py): the core stack stays
    # small. Its canary tests inject a slow or failing canary.
    "VERITAS_SERVING_ENABLED": "false",
    "VERITAS_SERVING_FAULT_INJECTION": "true",
    "VERITAS_RAY_TEMP_DIR": f"/tmp/ray-vt{_SLOT}",
    # A backlog of a few seconds' work scales serving out to its bound (the last serving test).
    "VERITAS_SERVING_SCALE_OUT_LAG": "3000",
    "VERITAS_SERVING_SCALE_CHECK_S": "1",
    "VERITAS_SERVING_MAX_REPLICAS": "2",
}


def test_settings() -> Settings:
    return Settings()


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def infra() -> Iterator[Settings]:
    """Kafka + Postgres + topics + tables, fresh for the session."""
    from veritas import services

    # The worker processes started by `stack` read the same variables: they are the test settings.
    os.environ.update(TEST_ENV)
    s = Settings()
    services.down(s)
    shutil.rmtree(s.var_dir, ignore_errors=True)
    services.prepare(s)
    yield s
    services.down(s)


@pytest.fixture(scope="session")
def stack(infra: Settings) -> Iterator[Settings]:
    """The whole local stack: infra plus the command handler, relay, projector and API."""
    from veritas import services

    services.up(infra)
    yield infra

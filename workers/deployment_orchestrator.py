"""The deployment saga's orchestrator: the faust runtime (workers.sagas) running
sagas.deployment's process manager. `python -m workers.deployment_orchestrator`."""

from __future__ import annotations

from sagas.deployment import DEPLOYMENT_SAGA
from workers.sagas.runtime import run

if __name__ == "__main__":
    run(DEPLOYMENT_SAGA)

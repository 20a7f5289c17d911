"""The retraining saga's orchestrator: the faust runtime (workers.sagas) running
sagas.retraining's process manager. `python -m workers.retraining_orchestrator`."""

from __future__ import annotations

from sagas.retraining import RETRAINING_SAGA
from workers.sagas.runtime import run

if __name__ == "__main__":
    run(RETRAINING_SAGA)

"""The training saga's orchestrator: the faust runtime (workers.sagas) running sagas.training's
process manager. `python -m workers.training_orchestrator`."""

from __future__ import annotations

from sagas.training_manager import TRAINING_SAGA
from workers.sagas.runtime import run

if __name__ == "__main__":
    run(TRAINING_SAGA)

"""The data_drift gate's job, which runs beside the torch child (``ml.job`` kind ``drift``)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ml import child
from ml.errors import PermanentStepError, StepTimeout, TransientStepError

log = logging.getLogger("veritas.steps")


def start_drift(snapshot_dir: str, workdir: Path, timeout_s: float) -> Future[dict[str, Any]]:
    """The drift job, started on a thread of its own. The caller that fails meanwhile does not
    wait for it: the thread ends with the job, whose result nobody reads."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="drift-gate")
    job = {"kind": "drift", "inputs": {"snapshot_dir": snapshot_dir}}
    future = pool.submit(child.run_job, job, workdir, timeout_s, ignore)
    pool.shutdown(wait=False)
    return future


def ignore(_: dict[str, Any]) -> None:
    return None


def measured(future: Future[dict[str, Any]]) -> dict[str, Any] | None:
    """The gate training measured beside it; None (validation measures it) when that failed."""
    try:
        return dict(future.result()["gate"])
    except (PermanentStepError, TransientStepError, StepTimeout) as exc:
        log.warning("the data_drift gate was not measured beside training: %s", exc)
        return None

"""Run an ``ml.job`` in a child process, so the calling process never imports torch (no torch).

``run_job`` writes the job to ``<workdir>/job.json``, starts ``sys.executable -m ml.job`` in its
own session (process group), hands each JSON progress line to ``on_progress``, and maps the end:

* exit 0 with ``{"ok": true}`` in the result file: the result dict is returned;
* exit 3: ``PermanentStepError`` (the result's ``error``);
* anything else (exit 1, a signal, a missing or unreadable result): ``TransientStepError``
  with the tail of ``<workdir>/stderr.log``;
* past ``timeout_s``: the whole process group is killed and ``StepTimeout`` is raised.

If ``on_progress`` raises, the child is killed and the exception propagates.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ml.errors import PermanentStepError, StepTimeout, TransientStepError
from ml.util import atomic_write, pretty_json

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
STDERR_FILE = "stderr.log"
EXIT_PERMANENT = 3
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_EOF = None

ProgressCallback = Callable[[dict[str, Any]], None]


def run_job(
    job: dict[str, Any], workdir: Path, timeout_s: float, on_progress: ProgressCallback
) -> dict[str, Any]:
    """Run ``job`` (see ``ml.job``) in a child; ``output_dir`` defaults to ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    job = {**job, "output_dir": str(job.get("output_dir") or workdir.resolve())}
    job_path = atomic_write(workdir / JOB_FILE, pretty_json(job))
    result_path = Path(job["output_dir"]) / RESULT_FILE
    result_path.unlink(missing_ok=True)  # left by an earlier attempt
    stderr_path = workdir / STDERR_FILE
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ml.job", str(job_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_child_env(),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            _pump(proc, time.monotonic() + timeout_s, on_progress)
        except BaseException:
            _kill(proc)
            raise
    return outcome(proc.returncode, _read_result(result_path), _tail(stderr_path))


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when its parent dies (PR_SET_PDEATHSIG), so a
    step worker killed with -9 leaves no training behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _child_env() -> dict[str, str]:
    """The parent's environment, with this package's root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    paths = [str(_PACKAGE_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _reader(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    with stream:
        for line in iter(stream.readline, b""):
            lines.put(line)
    lines.put(_EOF)


def _pump(proc: subprocess.Popen[bytes], deadline: float, on_progress: ProgressCallback) -> None:
    """Forward progress lines until the child's stdout closes and it exits, or the deadline."""
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            _timeout(proc)
        if line is _EOF:
            break
        event = _parse(line)
        if event is not None:
            on_progress(event)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _timeout(proc)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _timeout(proc: subprocess.Popen[bytes]) -> None:
    _kill(proc)
    raise StepTimeout(
        f"the ml.job child (pid {proc.pid}) ran past its timeout and was killed", proc.pid
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", errors="replace")


def outcome(returncode: int, result: dict[str, Any] | None, stderr_tail: str) -> dict[str, Any]:
    """The returned result, or the typed exception for how the child ended."""
    if returncode == 0 and result is not None and result.get("ok") is True:
        return result
    error = (result or {}).get("error") or "no result file"
    if returncode == EXIT_PERMANENT:
        raise PermanentStepError(str(error))
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    raise TransientStepError(f"the ml.job child {how}: {error}\n{stderr_tail}".rstrip())

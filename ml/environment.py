"""The lineage's environment and code revision (no torch: versions come from package metadata)."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

FRAMEWORKS = ("torch", "numpy", "safetensors", "scikit-learn", "pandas")


def package_version(name: str) -> str | None:
    """The installed distribution's version, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def framework_versions() -> dict[str, str | None]:
    """Python and the versions of the frameworks an artifact depends on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: package_version(name) for name in FRAMEWORKS})
    return versions


def environment(device: str | None = None, device_name: str | None = None) -> dict[str, Any]:
    """Where a step ran: interpreter, frameworks, platform and the device it used."""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "frameworks": framework_versions(),
        "device": device,
        "device_name": device_name,
    }


def code_revision(repo: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` in ``repo`` (default: this package's checkout), else None."""
    cwd = repo if repo is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = out.stdout.strip()
    return revision if out.returncode == 0 and len(revision) in (40, 64) else None

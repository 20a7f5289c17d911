"""docker-compose.yml runs what `veritas up` runs: every supervised service, each once, from one
image that holds every package of the project, with the var/ volume they share (keys, artifacts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config.settings import ROOT, Settings
from veritas import services


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def _module(command: list[str]) -> tuple[str, ...]:
    """What a command runs: ("uvicorn", app), or (module, *args) of `python -m module args`."""
    args = command[command.index("-m") + 1 :] if "-m" in command else command
    return ("uvicorn", args[1]) if args[0] == "uvicorn" else tuple(args)


def test_compose_runs_every_service_the_supervisor_runs() -> None:
    s = Settings(var_dir=Path("/tmp/unused"))
    wanted = {
        name: _module(cmd)
        for name, cmd in {**services._commands(s), **services._serving_commands(s)}.items()
    }
    compose = _compose()["services"]
    ours = {n: spec for n, spec in compose.items() if spec.get("image") == "veritas:local"}
    got = {n: _module(spec["command"]) for n, spec in ours.items() if n != "init"}
    assert got == wanted
    assert ours["init"]["command"] == ["veritas", "init"]
    for name, spec in ours.items():
        assert "veritas-var:/app/var" in spec["volumes"], name


def test_the_image_holds_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY . ." in dockerfile and "'.[ml]'" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages and not packages & {i.strip("/") for i in ignored}

"""`veritas train` and `veritas runs`: start a training saga and follow it live; list runs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from config.settings import Settings

TokenOpt = Annotated[str, typer.Option("--token", envvar="VERITAS_TOKEN", help="a JWT")]
ENDED = ("completed", "failed", "cancelled")


def _api(token: str) -> httpx.Client:
    return httpx.Client(
        base_url=Settings().api_url, headers={"authorization": f"Bearer {token}"}, timeout=30
    )


def _start(api: httpx.Client, payload: dict[str, Any]) -> str:
    r = api.post(
        "/commands", params={"wait": "true"}, json={"type": "StartTraining", "payload": payload}
    )
    body = r.json()
    if r.status_code >= 400 or body.get("status") == "rejected":
        typer.echo(
            f"refused: {body.get('reason_code')}: {body.get('message') or body.get('detail')}",
            err=True,
        )
        raise typer.Exit(2)
    if body.get("status") != "accepted":
        typer.echo(f"sent as {body['command_id']}; no result yet", err=True)
        raise typer.Exit(1)
    return str(body["events"][0]["aggregate_id"])


def _view(run: dict[str, Any]) -> Table:
    t = Table(title=f"training run {run['run_id']} ({run['model_name']})", show_header=False)
    t.add_row("status", run["status"])
    t.add_row("step", str(run.get("current_step") or "-"))
    points = [p for p in run.get("progress", []) if "epoch" in p]
    if points:
        p = points[-1]
        t.add_row("epoch", f"{p['epoch']}  loss {p['loss']:.4f}  accuracy {p['accuracy']:.3f}")
    if run.get("retries"):
        t.add_row("retries", str(len(run["retries"])))
    for c in run.get("compensations", []):
        t.add_row("compensated", c["step"])
    if run.get("version"):
        t.add_row("version", run["version"])
    if run.get("error"):
        t.add_row("error", str(run["error"])[:200])
    return t


def follow(api: httpx.Client, run_id: str, timeout_s: float) -> dict[str, Any]:
    run: dict[str, Any] = {"run_id": run_id, "model_name": "?", "status": "starting"}
    deadline = time.monotonic() + timeout_s
    with Live(_view(run), console=Console(stderr=True), refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            r = api.get(f"/training/runs/{run_id}")
            if r.status_code == 200:
                run = r.json()
                live.update(_view(run))
                if run["status"] in ENDED:
                    break
            time.sleep(0.5)
    return run


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        model: Annotated[str, typer.Option("--model", "-m")],
        token: TokenOpt,
        dataset: Annotated[str, typer.Option("--dataset")] = "sklearn:digits",
        epochs: int = 20,
        learning_rate: float = 1e-3,
        batch_size: int = 32,
        hidden_units: int = 64,
        seed: int = 0,
        min_accuracy: float = 0.0,
        declared_major: bool = False,
        wait: Annotated[
            bool, typer.Option(help="follow the run live; exit 0 only on completion")
        ] = False,
        timeout: float = 1800.0,
    ) -> None:
        """Start a training saga: data preparation, training, validation, registration."""
        hp = {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size,
              "hidden_units": hidden_units, "seed": seed}  # fmt: skip
        payload = {"model_name": model, "dataset_uri": dataset, "hyperparameters": hp,
                   "gates": {"min_accuracy": min_accuracy}, "declared_major": declared_major}  # fmt: skip
        with _api(token) as api:
            run_id = _start(api, payload)
            typer.echo(run_id)
            if not wait:
                return
            run = follow(api, run_id, timeout)
        typer.echo(
            f"{run['status']}"
            + (f": version {run['version']}" if run.get("version") else f": {run.get('error')}")
        )
        raise typer.Exit(0 if run["status"] == "completed" else 1)

    @app.command()
    def runs(
        token: TokenOpt,
        model: str | None = None,
        status: str | None = None,
        limit: int = 20,
    ) -> None:
        """List training runs, newest first."""
        params = {k: v for k, v in {"model": model, "status": status, "limit": limit}.items() if v}
        with _api(token) as api:
            r = api.get("/training/runs", params=params)
        if r.status_code != 200:
            typer.echo(r.text, err=True)
            raise typer.Exit(1)
        t = Table("run", "model", "status", "step", "version", "created")
        for run in r.json()["items"]:
            t.add_row(run["run_id"], run["model_name"], run["status"], run["current_step"] or "-",
                      run["version"] or "-", run["created_at"][:19])  # fmt: skip
        Console().print(t)

"""`veritas drift <model>`: the model's recent drift checks, newest first, with each detection's
report link and the retraining it started."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from config.settings import Settings

TokenOpt = Annotated[str, typer.Option("--token", envvar="VERITAS_TOKEN", help="a JWT")]


def register(app: typer.Typer) -> None:
    @app.command()
    def drift(
        model: str,
        token: TokenOpt,
        version: Annotated[str | None, typer.Option("--version", "-v")] = None,
        severity: Annotated[
            str | None, typer.Option(help="warning | critical | detected | none")
        ] = None,
        limit: int = 20,
    ) -> None:
        """Recent drift checks of MODEL (GET /monitoring/drift)."""
        s = Settings()
        params = {"model": model, "limit": str(limit)}
        params |= {k: v for k, v in (("version", version), ("severity", severity)) if v}
        with httpx.Client(
            base_url=s.api_url, headers={"authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            r = api.get("/monitoring/drift", params=params)
        if r.status_code != 200:
            typer.echo(f"{r.status_code}: {r.text[:300]}", err=True)
            raise typer.Exit(1)
        t = Table(title=f"drift checks of {model}")
        for col in ("version", "window", "score", "severity", "drifted", "report", "retraining"):
            t.add_column(col)
        for c in r.json()["items"]:
            t.add_row(
                c["version"],
                str(c["window_id"]),
                f"{c['score']:.3f}",
                c["severity"] or "-",
                ", ".join(c["drifted"][:4]) + (" ..." if len(c["drifted"]) > 4 else ""),
                f"{s.api_url}{c['report_url']}" if c["report_url"] else "-",
                (c["retraining"] or {}).get("event_id", "-"),
            )
        Console().print(t)

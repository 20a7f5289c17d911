"""The `veritas` command line."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import httpx
import typer

from config.settings import Settings
from infra import kafka
from infra.auth import issue_token
from veritas import cli_audit, cli_monitoring, cli_serving, cli_training, services
from veritas.bootstrap import bootstrap
from veritas.client import ResultWatcher, envelope, send

app = typer.Typer(help="Veritas: event-sourced control plane for ML models.", no_args_is_help=True)


@app.command()
def up() -> None:
    """Start Kafka, Postgres, the workers and the API in the background (idempotent)."""
    s = Settings()
    services.up(s)
    typer.echo(
        f"veritas is up: API {s.api_url}, Kafka {s.kafka_bootstrap_servers}, logs {s.log_dir}"
    )


@app.command()
def init() -> None:
    """Create topics, event-store tables and read models (starts embedded Kafka/Postgres if used)."""
    services.prepare(Settings())
    typer.echo("topics, tables and read models are ready")


@app.command()
def down() -> None:
    """Stop everything `up` started, by pid (harmless when nothing runs)."""
    services.down(Settings())
    typer.echo("veritas is down")


@app.command()
def status() -> None:
    """Show each component's health; exit 1 if any is unhealthy."""
    rows = services.status(Settings())
    for h in rows:
        word = "healthy" if h.healthy else h.status.upper()
        typer.echo(f"{h.name:<20} {word:<8} {h.detail}")
    raise typer.Exit(0 if all(h.healthy for h in rows) else 1)


@app.command("client-config")
def client_config(
    principal: Annotated[
        str, typer.Option(help="admin, relay, service or client (commands and predictions)")
    ] = "client",
) -> None:
    """Print librdkafka properties (key=value) for a Kafka client of this stack, e.g. a file for
    kcat -F or confluent-kafka. It holds the principal's password: keep it private."""
    if principal not in kafka.security.PRINCIPALS:
        typer.echo(f"error: unknown principal {principal!r}", err=True)
        raise typer.Exit(2)
    s = Settings()
    kafka.security.ensure_secrets(s)
    conf = kafka.client_config(s, principal=principal)
    typer.echo("\n".join(f"{k}={v}" for k, v in conf.items()))


@app.command()
def token(
    subject: Annotated[str, typer.Option("--subject", "-s")],
    role: Annotated[list[str], typer.Option("--role", "-r")],
    ttl: int = 3600,
) -> None:
    """Print a JWT for local use."""
    try:
        typer.echo(issue_token(Settings(), subject, role, ttl))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("send")
def send_cmd(
    command_type: Annotated[str, typer.Argument(metavar="TYPE")],
    payload: Annotated[str, typer.Option("--json", help="the command payload as JSON")],
    token_: Annotated[str, typer.Option("--token", envvar="VERITAS_TOKEN")],
    command_id: str | None = None,
    wait: float = 15.0,
) -> None:
    """Publish a command to its Kafka topic and print its result."""
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        typer.echo(f"error: --json is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    c = bootstrap()
    env = envelope(command_type, body, command_id)
    watcher = ResultWatcher(c)
    send(c, token_, env, key=str(body.get("model_name") or body.get("name") or env["command_id"]))
    result = watcher.wait(env["command_id"], wait)
    watcher.close()
    typer.echo(
        json.dumps(result or {"command_id": env["command_id"], "status": "pending"}, indent=2)
    )
    raise typer.Exit(0 if result and result["status"] == "accepted" else 1)


@app.command()
def query(
    path: Annotated[str, typer.Argument(help="API path, e.g. /models/iris")],
    token_: Annotated[str, typer.Option("--token", envvar="VERITAS_TOKEN")],
) -> None:
    """GET a read-model API path and print the JSON."""
    r = httpx.get(
        f"{Settings().api_url}{path}", headers={"authorization": f"Bearer {token_}"}, timeout=10
    )
    typer.echo(json.dumps(r.json(), indent=2))
    raise typer.Exit(0 if r.is_success else 1)


@app.command("replay")
def replay_cmd(
    verify: Annotated[bool, typer.Option(help="swap only if digests and hash chains hold")] = False,
) -> None:
    """Rebuild every read model from offset 0 into a fresh schema, then swap it in atomically."""
    from rich.progress import Progress

    from projections.replay import replay

    c = bootstrap()
    with Progress(transient=True) as bar:
        task = bar.add_task("replaying", total=None)
        report = replay(
            c,
            verify=verify,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    rate = report.records / report.seconds if report.seconds else 0.0
    typer.echo(f"records replayed : {report.records} in {report.seconds:.1f}s ({rate:.0f}/s)")
    typer.echo(f"aggregates       : {report.chains_checked} hash chains checked")
    mode = report.mode + (f" ({report.fallback_reason})" if report.fallback_reason else "")
    typer.echo(f"rebuild          : {mode}")
    if report.chain_break:
        b = report.chain_break
        typer.echo(
            f"CHAIN BROKEN     : {b.aggregate_type} {b.aggregate_id} at version {b.version}: {b.reason}"
        )
    if report.log is not None:
        typer.echo(f"log check        : {'valid' if report.log.valid else 'NOT VALID'}")
        typer.echo(f"  {report.log.summary()}")
        for line in report.log.lines():
            typer.echo(f"  {line}")
    typer.echo(f"rebuilt digest   : {report.rebuilt_digest}")
    typer.echo(
        f"live digest      : {report.live_digest} ({'match' if report.digests_match else 'DIFFER'})"
    )
    for table in report.differing:
        typer.echo(f"  differs: {table}")
    if report.live_caught_up:
        typer.echo(f"live caught up   : {report.live_caught_up} records it had not projected yet")
    typer.echo(f"switched         : {'yes' if report.switched else 'no'}")
    ok = report.switched and (not verify or report.verified)
    raise typer.Exit(0 if ok else 1)


cli_training.register(app)
cli_audit.register(app)
cli_monitoring.register(app)
cli_serving.register(app)


@app.command()
def demo() -> None:
    """Run the end-to-end demo against a running stack (`veritas up` first)."""
    from veritas.demo import run

    sys.exit(run(Settings()))


if __name__ == "__main__":
    app()

"""`veritas verify` (the log: the event store against the event topics, signatures included),
`veritas audit <model>` (a model's timeline, verified from the log) and `veritas keys` (the
published public keys; `keys rotate`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from config.settings import Settings
from projections.audit import Verification
from projections.log_audit import LogReport


def _echo_verification(v: Verification) -> None:
    where = ""
    if v.chain_break:
        b = v.chain_break
        where = f" BROKEN at {b.aggregate_type} {b.aggregate_id} version {b.version}: {b.reason}"
    if v.undecodable:
        where += f" {v.undecodable} UNDECODABLE record(s)"
    typer.echo(
        f"{v.source}: {v.aggregates} aggregates, {v.events} events,"
        f"{' valid' if v.valid else ''}{where}"
    )
    for problem in v.problems:
        typer.echo(f"  undecodable: {problem}")
    if v.undecodable > len(v.problems):
        typer.echo(f"  ... and {v.undecodable - len(v.problems)} more")
    for refused in v.refused:
        typer.echo(f"  refused: {refused}")
    if v.refused_count > len(v.refused):
        typer.echo(f"  ... and {v.refused_count - len(v.refused)} more refused")


def _echo_log(r: LogReport) -> None:
    typer.echo(f"log: {r.summary()}")
    for line in r.lines():
        typer.echo(f"  {line}")
    typer.echo("log: valid" if r.valid else "log: NOT VALID")


def verify(
    topic: Annotated[
        list[str] | None, typer.Option(help="verify only these topics (e.g. a copy)")
    ] = None,
    store: Annotated[bool, typer.Option(help="with --topic: verify the event store too")] = True,
) -> None:
    """Verify the log: every event of the event store and of the event topics (hash, chain,
    signature), and the two compared; names each problem by aggregate, version and place."""
    from projections import audit, log_audit
    from veritas.bootstrap import bootstrap

    c = bootstrap()
    if not topic:
        report = log_audit.verify_log(c)
        _echo_log(report)
        raise typer.Exit(0 if report.valid else 1)
    checks = ([audit.verify_store(c)] if store else []) + [audit.verify_topics(c, topic)]
    for v in checks:
        _echo_verification(v)
    raise typer.Exit(0 if all(v.valid for v in checks) else 1)


def audit(
    model: str,
    jsonl: Annotated[
        str | None, typer.Option(help="also export the timeline as JSONL to this file")
    ] = None,
) -> None:
    """Print a model's whole timeline from the event store (actors, approvals, stage changes),
    verified in the log: hashes, chains and signatures in the store and on the topics, the two
    compared, and the read model's copy compared with the store."""
    from projections import log_audit
    from veritas.bootstrap import bootstrap

    c = bootstrap()
    aggregates = log_audit.model_aggregates(c, model)
    if not aggregates:
        typer.echo(f"no events for model '{model}'", err=True)
        raise typer.Exit(1)
    report, timeline = log_audit.verify_model(c, aggregates)
    for e in timeline:
        keep = ("version", "to_stage", "approver", "reason", "target_stage", "approvers")
        detail = {k: v for k, v in e["payload"].items() if k in keep}
        typer.echo(
            f"{e['occurred_at']}  {e['aggregate_type']:<16} v{e['version']:<3} {e['type']:<24}"
            f" by {e['actor']:<10} {json.dumps(detail)}"
        )
    if jsonl:
        with open(jsonl, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(e, sort_keys=True) + "\n" for e in timeline)
    for line in report.lines():
        typer.echo(f"  {line}")
    verdict = "verified" if report.valid else "NOT VERIFIED"
    typer.echo(
        f"{len(timeline)} events; hash chains {verdict} (hashes, chains and signatures, in the"
        " event store and on the event topics)"
    )
    raise typer.Exit(0 if report.valid else 1)


keys_app = typer.Typer(help="The public keys events are signed with.", invoke_without_command=True)


@keys_app.callback()
def keys_list(ctx: typer.Context) -> None:
    """List every published public key (retired ones too); never a private key."""
    if ctx.invoked_subcommand is not None:
        return
    from infra import keys

    for k in keys.public_keys(Settings()):
        state = f"retired {k.retired_at}" if k.retired_at else "active"
        typer.echo(f"{k.key_id}  Ed25519  created {k.created_at}  {state}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key and retire the active one (its public key stays published)."""
    from infra import keys

    try:
        old, new = keys.rotate(Settings())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"retired {old}\nactive  {new}")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
    app.command("audit")(audit)
    app.add_typer(keys_app, name="keys")

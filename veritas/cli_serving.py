"""`veritas predict <model> --json '[...]'` (one request through Kafka, the result printed) and
`veritas deployments` (what each model serves: GET /deployments)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any

import httpx
import orjson
import typer
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from rich.console import Console
from rich.table import Table

from config.settings import Settings
from infra import kafka

TokenOpt = Annotated[str, typer.Option("--token", envvar="VERITAS_TOKEN", help="a JWT")]


def predict_once(
    s: Settings, model: str, features: Any, timeout_s: float = 60.0
) -> dict[str, Any] | None:
    """Produce one request onto inference.requests; its result from inference.results."""
    rid = f"cli-{uuid.uuid4()}"
    consumer = Consumer(
        kafka.client_config(
            s,
            principal="client",
            **{
                "group.id": f"veritas-cli-{rid}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
    )
    try:
        meta = consumer.list_topics("inference.results", timeout=s.kafka_call_timeout_s)
        parts = [
            TopicPartition("inference.results", p, OFFSET_END)
            for p in meta.topics["inference.results"].partitions
        ]
        consumer.assign(parts)
        consumer.consume(1, 0.5)  # resolves the end offsets before the request is sent
        producer = Producer(
            kafka.client_config(s, principal="client", **{"enable.idempotence": True})
        )
        body = {"request_id": rid, "model_name": model, "features": features}
        producer.produce("inference.requests", orjson.dumps(body), rid.encode())
        producer.flush(s.kafka_call_timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                if m.error() is None and m.key() == rid.encode():
                    result: dict[str, Any] = orjson.loads(m.value() or b"{}")
                    return result
        return None
    finally:
        consumer.close()


def register(app: typer.Typer) -> None:
    @app.command()
    def predict(
        model: str,
        features: Annotated[str, typer.Option("--json", help="the features: a JSON list or map")],
        timeout: float = 60.0,
    ) -> None:
        """Send one request for MODEL through Kafka and print its result (JSON)."""
        try:
            parsed = json.loads(features)
        except json.JSONDecodeError as exc:
            typer.echo(f"--json is not JSON: {exc}", err=True)
            raise typer.Exit(2) from None
        result = predict_once(Settings(), model, parsed, timeout)
        if result is None:
            typer.echo(f"no result within {timeout:.0f} s (is serving up?)", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps(result))
        raise typer.Exit(1 if "reason_code" in result else 0)

    @app.command()
    def deployments(token: TokenOpt) -> None:
        """What each model serves, its canary and share, and its rollout (GET /deployments)."""
        s = Settings()
        with httpx.Client(
            base_url=s.api_url, headers={"authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            r = api.get("/deployments")
        if r.status_code != 200:
            typer.echo(f"{r.status_code}: {r.text[:300]}", err=True)
            raise typer.Exit(1)
        t = Table(title="deployments")
        for col in ("model", "production", "canary", "share", "rollout", "status", "results"):
            t.add_column(col)
        for d in r.json()["items"]:
            results = sum(int(v["results"]) for v in d["counters"].values())
            t.add_row(
                d["model_name"],
                d["production_version"] or "-",
                d["canary_version"] or "-",
                f"{d['canary_share']:.0%}",
                d["rollout_version"] or "-",
                d["status"],
                str(results),
            )
        Console().print(t)

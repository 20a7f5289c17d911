"""The full log check: every event of the event store and every event on the event topics, each
checked (hash, chain, signature), and the two compared (projections.log_check); and one
aggregate's (or one model's) history verified from the store, with the read model's copy
compared to it.

The relay's position is read first, then the topics, then the store: every event the relay had
published when the check began is then in both reads, and a store event above that position and
not on the topics is only not yet relayed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from events.catalog import EVENT_TOPICS
from infra import kafka
from infra.context import Infra as Container
from projections import audit
from projections.log_check import (
    MAX_LISTED,
    Comparison,
    Listed,
    Placed,
    Problem,
    SourceCheck,
    Verdicts,
    check_source,
    compare,
)

Distinct = Mapping[tuple[str, int], list[Placed]]


@dataclass
class LogReport:
    store: SourceCheck
    kafka: SourceCheck
    comparison: Comparison
    relayed_upto: int
    undecodable: list[str] = field(default_factory=list)  # topic records, "place: why"
    read_model_extra: Listed = field(default_factory=Listed)  # copies the store does not hold

    @property
    def valid(self) -> bool:
        return (
            self.store.valid
            and self.kafka.valid
            and self.comparison.agree
            and not self.undecodable
            and not self.read_model_extra.count
        )

    def lines(self) -> list[str]:
        """What is wrong, one problem a line (nothing when all is well)."""
        out: list[str] = []
        for check in (self.store, self.kafka):
            out += _listed(f"refused in {check.source}", check.refused)
        out += [f"undecodable on kafka: {p}" for p in self.undecodable[:MAX_LISTED]]
        out += _listed("only in the store", self.comparison.only_in_store)
        out += _listed("only on kafka", self.comparison.only_in_kafka)
        out += _listed("conflicting", self.comparison.conflicting)
        out += _listed("in the read model, not in the store", self.read_model_extra)
        return out

    def summary(self) -> str:
        c = self.comparison
        return (
            f"store: {self.store.events} events of {self.store.aggregates} aggregates,"
            f" {self.store.refused.count} refused; kafka: {self.kafka.events} events,"
            f" {self.kafka.refused.count} refused, {len(self.undecodable)} undecodable;"
            f" only in store {c.only_in_store.count}, only on kafka {c.only_in_kafka.count},"
            f" conflicting {c.conflicting.count}, not yet relayed {c.not_yet_relayed}"
            f" (relayed up to notification {self.relayed_upto})"
        )


def _listed(what: str, listed: Listed) -> list[str]:
    out = [f"{what}: {p}" for p in listed.items]
    if listed.count > len(listed.items):
        out.append(f"{what}: ... and {listed.count - len(listed.items)} more")
    return out


def verify_log(c: Container, aggregates: Collection[str] | None = None) -> LogReport:
    """The store against the event topics (only `aggregates`' events when given)."""
    relayed = kafka.relay_position(c.settings, principal="service")  # reads, never the relay's
    bad: list[str] = []
    topics = list(EVENT_TOPICS.values())
    on_kafka = audit.topic_events(c, topics, bad, aggregates)
    verdicts: Verdicts = {}  # a copy's signature is verified once, not once per source
    kafka_check, kafka_events = check_source("kafka", on_kafka, c.event_keys, c.legacy, verdicts)
    with c.read_model_connection() as conn:
        stored = audit.store_events(conn, c.settings.db_schema, aggregates)
        store_check, store_events = check_source("store", stored, c.event_keys, c.legacy, verdicts)
    comparison = compare(store_events, kafka_events, relayed)
    return LogReport(store_check, kafka_check, comparison, relayed, bad)


def not_in_store(read_model: Iterable[Placed], store: Distinct) -> Listed:
    """The read model's events that the store does not hold (by version and hash)."""
    out = Listed()
    for e in read_model:
        if e.doc is None or e.hash not in {s.hash for s in store.get(e.key, [])}:
            out.add(Problem.at(e, "not_in_store"))
    return out


@dataclass
class AggregateAudit:
    events: list[dict[str, Any]]  # the store's, by version
    store: SourceCheck
    read_model_extra: Listed

    @property
    def valid(self) -> bool:
        return self.store.valid and not self.read_model_extra.count


def verify_aggregate(c: Container, aggregate_id: str) -> AggregateAudit:
    """One aggregate's history from the store, signatures included, and the read model's copy
    compared with it."""
    with c.read_model_connection() as conn:
        placed = list(audit.store_events(conn, c.settings.db_schema, [aggregate_id]))
        check, distinct = check_source("store", placed, c.event_keys, c.legacy)
        extra = not_in_store(audit.read_model_events(conn, None, [aggregate_id]), distinct)
    return AggregateAudit([dict(e.doc) for e in placed if e.doc is not None], check, extra)


def model_aggregates(c: Container, model_name: str) -> list[str]:
    """The aggregates of a model (the model, its versions, submissions and training runs), as the
    read model knows them."""
    with c.read_model_connection() as conn:
        rows = conn.execute(
            "SELECT aggregate_id::text FROM rm_models WHERE name = %(n)s"
            " UNION SELECT aggregate_id::text FROM rm_model_versions WHERE model_name = %(n)s"
            " UNION SELECT submission_id::text FROM rm_submissions WHERE model_name = %(n)s"
            " UNION SELECT run_id::text FROM rm_training_runs WHERE model_name = %(n)s",
            {"n": model_name},
        ).fetchall()
    return sorted(str(r[0]) for r in rows)


def verify_model(c: Container, aggregates: list[str]) -> tuple[LogReport, list[dict[str, Any]]]:
    """A model's aggregates checked in the log (store and topics), the read model's copy compared
    with the store; and the store's events of them in commit order (the timeline)."""
    report = verify_log(c, aggregates)
    with c.read_model_connection() as conn:
        placed = list(audit.store_events(conn, c.settings.db_schema, aggregates))
        distinct: dict[tuple[str, int], list[Placed]] = {}
        for e in placed:
            distinct.setdefault(e.key, []).append(e)
        report.read_model_extra = not_in_store(
            audit.read_model_events(conn, None, aggregates), distinct
        )
    placed.sort(key=lambda e: e.notification_id or 0)
    return report, [dict(e.doc) for e in placed if e.doc is not None]

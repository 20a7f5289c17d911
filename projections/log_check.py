"""The log check's logic, over events in memory: which events of one source (the event store, the
event topics, the read model's copy) are not believed and why, and where two sources disagree.

Every event is named by aggregate_type, aggregate_id, version and its place in its source
("store#<notification id>", "<topic>/<partition>/<offset>", "read_model"). No I/O here:
projections.log_audit reads the sources.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from events.envelope import ChainBreak, Undecodable, published_hash
from events.signatures import Head, KeySource, Legacy, Reason, check_event, check_place

Doc = Mapping[str, Any]
MAX_LISTED = 100  # problems named one by one per kind; the counts cover them all


@dataclass(frozen=True)
class Placed:
    """One event (or one undecodable record: `doc` None) where a source holds it."""

    doc: Doc | None
    place: str
    notification_id: int | None = None  # the store's, or the relay's header on a record
    aggregate_type: str = "?"
    aggregate_id: str = "?"
    version: int = 0

    @staticmethod
    def of(doc: Doc, place: str, notification_id: int | None = None) -> Placed:
        agg_type, agg, version = doc["aggregate_type"], doc["aggregate_id"], doc["version"]
        return Placed(doc, place, notification_id, str(agg_type), str(agg), int(version))

    @property
    def key(self) -> tuple[str, int]:
        return (self.aggregate_id, self.version)

    @property
    def hash(self) -> str:
        return str(self.doc["hash"]) if self.doc is not None else ""


@dataclass(frozen=True)
class Problem:
    aggregate_type: str
    aggregate_id: str
    version: int
    place: str
    reason: str

    @staticmethod
    def at(e: Placed, reason: str) -> Problem:
        return Problem(e.aggregate_type, e.aggregate_id, e.version, e.place, reason)

    def __str__(self) -> str:
        return (
            f"{self.aggregate_type} {self.aggregate_id} version {self.version}"
            f" at {self.place}: {self.reason}"
        )


@dataclass
class Listed:
    """A bounded list of problems and their full count."""

    items: list[Problem] = field(default_factory=list)
    count: int = 0

    def add(self, p: Problem) -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED:
            self.items.append(p)


@dataclass
class SourceCheck:
    source: str
    aggregates: int = 0
    events: int = 0
    refused: Listed = field(default_factory=Listed)
    chain_break: ChainBreak | None = None  # the first refused event, in aggregate order

    @property
    def valid(self) -> bool:
        return self.refused.count == 0


# A signature's verdict, by (hash, key_id, signature): once an event's content is its hash, the
# verdict depends on nothing else, so the store's event and its copies on the topics share one.
Verdicts = dict[tuple[str, Any, Any], Reason | None]


def check_source(
    source: str,
    events: Iterable[Placed],
    keys: KeySource | None,
    legacy: Legacy,
    verdicts: Verdicts | None = None,
) -> tuple[SourceCheck, dict[tuple[str, int], list[Placed]]]:
    """Refused events of one source, each once with its first reason: its hash and signature
    (events.signatures.check_event), then its place after the previous event in the source's
    order. Copies of an event (same version and hash) count once. Also returns the distinct
    events by (aggregate_id, version), for the comparison of sources. Without `keys` only the
    hashes and chains are checked (a copy whose signatures the log check covers)."""
    check, verdicts = SourceCheck(source), {} if verdicts is None else verdicts
    streams: dict[str, list[Placed]] = defaultdict(list)
    for e in events:
        if e.doc is None:
            _refuse(check, e, "undecodable")
            continue
        streams[e.aggregate_id].append(e)
    distinct: dict[tuple[str, int], list[Placed]] = {}
    for agg in sorted(streams):
        check.aggregates += 1
        head: Head | None = None
        for e in sorted(streams[agg], key=lambda x: x.version):  # stable: source order kept
            others = distinct.setdefault(e.key, [])
            if any(o.hash == e.hash for o in others) and _hash_only(e.doc or {}) is None:
                continue  # a copy (one whose content is not its hash is a forgery)
            others.append(e)
            check.events += 1
            reason = _reason(e, head, keys, legacy, verdicts)
            if reason is not None:
                _refuse(check, e, reason)
            if head is None or e.version > head.version:
                head = Head(e.version, e.hash)
    return check, distinct


def _hash_only(doc: Doc) -> Reason | None:
    try:
        return None if published_hash(doc) == doc["hash"] else "bad_hash"
    except Undecodable:
        return "undecodable"


def _signed(doc: Doc, keys: KeySource | None, legacy: Legacy, verdicts: Verdicts) -> Reason | None:
    if (reason := _hash_only(doc)) or keys is None:
        return reason
    known = (str(doc["hash"]), doc.get("key_id"), doc.get("signature"))
    if known not in verdicts:
        verdicts[known] = check_event(doc, keys, legacy)
    return verdicts[known]


def _reason(
    e: Placed, head: Head | None, keys: KeySource | None, legacy: Legacy, verdicts: Verdicts
) -> str | None:
    assert e.doc is not None
    if reason := _signed(e.doc, keys, legacy, verdicts):
        return reason
    place = check_place(head, e.version, str(e.doc["prev_hash"]))
    return "conflicting_version" if place == "seen" else place


def _refuse(check: SourceCheck, e: Placed, reason: str) -> None:
    check.refused.add(Problem.at(e, reason))
    if check.chain_break is None:
        check.chain_break = ChainBreak(e.aggregate_type, e.aggregate_id, e.version, reason)


@dataclass
class Comparison:
    only_in_store: Listed = field(default_factory=Listed)
    only_in_kafka: Listed = field(default_factory=Listed)
    conflicting: Listed = field(default_factory=Listed)  # one Problem per side
    not_yet_relayed: int = 0

    @property
    def agree(self) -> bool:
        return not (self.only_in_store.count or self.only_in_kafka.count or self.conflicting.count)


def compare(
    store: Mapping[tuple[str, int], list[Placed]],
    kafka: Mapping[tuple[str, int], list[Placed]],
    relayed_upto: int,
) -> Comparison:
    """Where the store and the topics disagree. A store event above the relay's position
    (`relayed_upto`, a notification id) and not on the topics is only not yet relayed."""
    out = Comparison()
    for key in sorted(store.keys() | kafka.keys()):
        mine, theirs = store.get(key, []), kafka.get(key, [])
        hashes = {e.hash for e in theirs}
        for e in mine:
            if e.hash in hashes:
                continue
            if theirs:
                out.conflicting.add(Problem.at(e, "conflicting"))
            elif (e.notification_id or 0) > relayed_upto:
                out.not_yet_relayed += 1
            else:
                out.only_in_store.add(Problem.at(e, "only_in_store"))
        stored = {e.hash for e in mine}
        for e in theirs:
            if e.hash not in stored:
                target = out.conflicting if mine else out.only_in_kafka
                target.add(Problem.at(e, "conflicting" if mine else "only_in_kafka"))
    return out

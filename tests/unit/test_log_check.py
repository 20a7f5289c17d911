"""The log check's logic over events in memory: each refused event named with its reason and
place, copies counted once, and the store and the topics compared (only in one, conflicting, not
yet relayed)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.envelope import GENESIS_HASH, EventEnvelope, chain_hash, read_published
from events.signatures import NoLegacy
from projections.log_check import Placed, Verdicts, check_source, compare
from tests.unit.test_event_signatures import KEY, TRUSTED, event, signed


def chain(n: int, agg: UUID | None = None, key: Ed25519PrivateKey = KEY) -> list[EventEnvelope]:
    agg, out, prev = agg or uuid4(), [], GENESIS_HASH
    for v in range(1, n + 1):
        env = signed(event(v, prev, aggregate_id=agg), key)
        out.append(env)
        prev = env.hash
    return out


def in_store(envs: list[EventEnvelope], first_nid: int = 1) -> list[Placed]:
    return [
        Placed.of(read_published(e.to_bytes()), f"store#{first_nid + i}", first_nid + i)
        for i, e in enumerate(envs)
    ]


def on_topic(envs: list[EventEnvelope], start: int = 0) -> list[Placed]:
    return [
        Placed.of(read_published(e.to_bytes()), f"registry.events/0/{start + i}")
        for i, e in enumerate(envs)
    ]


def rechained(envs: list[EventEnvelope], at: int, **change: Any) -> list[dict[str, Any]]:
    """The docs with event `at` (0-based) changed and the chain recomputed from there on,
    signatures kept (they no longer match)."""
    docs = [read_published(e.to_bytes()) for e in envs]
    docs[at].update(change)
    for i in range(at, len(docs)):
        docs[i]["prev_hash"] = docs[i - 1]["hash"] if i else GENESIS_HASH
        body = {k: v for k, v in docs[i].items() if k not in ("hash", "key_id", "signature")}
        docs[i]["hash"] = chain_hash(docs[i]["prev_hash"], body)
    return docs


def check(events: list[Placed]) -> Any:
    return check_source("kafka", events, TRUSTED, NoLegacy())


def test_a_whole_signed_log_is_valid_and_copies_count_once() -> None:
    a, b = chain(3), chain(2)
    events = on_topic(a + b) + on_topic(a[1:2], start=10)  # the relay published one twice
    result, distinct = check(events)
    assert (result.aggregates, result.events, result.valid) == (2, 5, True)
    assert len(distinct) == 5


def test_forgeries_are_named_with_place_and_reason() -> None:
    envs = chain(2)
    agg = str(envs[0].aggregate_id)
    tail = envs[-1]
    unsigned = event(3, tail.hash, aggregate_id=envs[0].aggregate_id)  # chain recomputed
    other_key = signed(event(3, tail.hash, aggregate_id=uuid4()), Ed25519PrivateKey.generate())
    bad = read_published(signed(event(1, aggregate_id=uuid4()), KEY).to_bytes())
    bad["actor"] = "mallory"
    events = on_topic([*envs, unsigned]) + on_topic([other_key], 5)
    events.append(Placed.of(bad, "registry.events/1/7"))
    result, _ = check(events)
    got = {(p.aggregate_id, p.version, p.place, p.reason) for p in result.refused.items}
    assert got == {
        (agg, 3, "registry.events/0/2", "unsigned"),
        (str(other_key.aggregate_id), 3, "registry.events/0/5", "unknown_key"),
        (bad["aggregate_id"], 1, "registry.events/1/7", "bad_hash"),
    }
    assert result.refused.count == 3 and not result.valid
    assert result.chain_break is not None


def test_a_recomputed_chain_fails_on_its_signatures_and_a_gap_is_named() -> None:
    envs = chain(4)
    docs = rechained(envs, 1, actor="mallory")
    events = [Placed.of(d, f"store#{i + 1}", i + 1) for i, d in enumerate(docs)]
    result, _ = check_source("store", events, TRUSTED, NoLegacy())
    assert [(p.version, p.reason) for p in result.refused.items] == [
        (2, "bad_signature"),
        (3, "bad_signature"),
        (4, "bad_signature"),
    ]
    gap, _ = check(on_topic([envs[0], envs[2]]))
    assert [(p.version, p.reason) for p in gap.refused.items] == [(3, "version_gap")]


def test_two_events_at_one_version_on_a_topic_conflict() -> None:
    envs = chain(2)
    rival = signed(event(2, envs[0].hash, aggregate_id=envs[0].aggregate_id), KEY)
    result, distinct = check(on_topic([*envs, rival]))
    assert [(p.version, p.place, p.reason) for p in result.refused.items] == [
        (2, "registry.events/0/2", "conflicting_version")
    ]
    assert len(distinct[(str(envs[0].aggregate_id), 2)]) == 2


def _distinct(events: list[Placed]) -> Any:
    return check_source("x", events, TRUSTED, NoLegacy())[1]


def test_compare_names_what_only_one_side_holds_and_what_conflicts() -> None:
    shared, forged_on_kafka, unrelayed, lost = chain(2), chain(1), chain(1), chain(1)
    edited = chain(2)
    edited_docs = rechained(edited, 1, actor="mallory")
    store = in_store(shared) + in_store(lost, 3) + in_store(edited[:1], 4)
    store.append(Placed.of(edited_docs[1], "store#5", 5))
    store += in_store(unrelayed, 9)
    kafka = on_topic(shared) + on_topic(shared[:1], 50) + on_topic(forged_on_kafka, 60)
    kafka += on_topic(edited, 70)
    result = compare(_distinct(store), _distinct(kafka), relayed_upto=8)
    assert [(p.aggregate_id, p.place) for p in result.only_in_store.items] == [
        (str(lost[0].aggregate_id), "store#3")
    ]
    assert [(p.aggregate_id, p.place) for p in result.only_in_kafka.items] == [
        (str(forged_on_kafka[0].aggregate_id), "registry.events/0/60")
    ]
    assert {(p.version, p.place, p.reason) for p in result.conflicting.items} == {
        (2, "store#5", "conflicting"),
        (2, "registry.events/0/71", "conflicting"),
    }
    assert result.not_yet_relayed == 1
    assert not result.agree


def test_compare_of_equal_logs_agrees() -> None:
    envs = chain(3) + chain(2)
    result = compare(_distinct(in_store(envs)), _distinct(on_topic(envs)), relayed_upto=5)
    assert result.agree and result.not_yet_relayed == 0


def test_a_record_that_claims_an_events_hash_is_no_copy() -> None:
    envs = chain(2)
    forged = read_published(envs[1].to_bytes())
    forged["actor"] = "mallory"  # hash and signature kept: it claims to be version 2
    result, _ = check([*on_topic(envs), Placed.of(forged, "registry.events/0/9")])
    assert [(p.version, p.place, p.reason) for p in result.refused.items] == [
        (2, "registry.events/0/9", "bad_hash")
    ]


class Counting:
    def __init__(self) -> None:
        self.lookups = 0

    def lookup(self, key_id: str) -> Any:
        self.lookups += 1
        return TRUSTED.lookup(key_id)


def test_an_events_signature_is_verified_once_for_both_sources() -> None:
    envs = chain(3)
    keys, verdicts = Counting(), Verdicts()
    store, _ = check_source("store", in_store(envs), keys, NoLegacy(), verdicts)
    kafka, _ = check_source("kafka", on_topic(envs), keys, NoLegacy(), verdicts)
    assert store.valid and kafka.valid and keys.lookups == 3
    resigned = read_published(envs[0].to_bytes())
    resigned["signature"] = resigned["signature"][::-1]  # same hash, another signature
    again, _ = check_source("kafka", [Placed.of(resigned, "t/0/9")], keys, NoLegacy(), verdicts)
    assert [p.reason for p in again.refused.items] == ["bad_signature"] and keys.lookups == 4

"""The process-manager runtime (sagas/runtime.py) on the real broker, Postgres and core services,
with the example saga (tests/integration/example_saga.py) as a real process.

Run with TEST_SLOT set (ports and data differ per slot); measurements are printed (-s) and kept in
var/test<slot>/saga_measurements.json. These tests put forged envelopes on training.events (the
projector's audit log takes in the one of an aggregate the store does not hold), kill Postgres
once and stop the command handlers for a while: they run after the e2e tests and test_projector.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from config.services import handler_name
from config.settings import Settings
from domain.registry import model_id
from events.envelope import EventEnvelope, seal
from infra import supervisor
from infra.auth import authenticate
from infra.kafka import transactional_producer
from infra.postgres import server as pg
from sagas.model import TimerFired, command_id, event_cause, timer_cause
from tests.helpers import end_offsets, kafka_conf
from tests.integration import example_saga as ex
from tests.integration.saga_harness import CommandReader, SagaProcess, record_measurement
from veritas import services
from veritas.bootstrap import Container, bootstrap

pytestmark = pytest.mark.kafka
HANDLED = "veritas_saga_events_handled_total"
SKIPPED = "veritas_saga_events_skipped_total"


@pytest.fixture(scope="module")
def container(stack: Settings) -> Iterator[Container]:
    c = bootstrap(stack)
    yield c
    c.close()


@pytest.fixture(scope="module")
def saga(stack: Settings) -> Iterator[SagaProcess]:
    proc = SagaProcess(stack)
    proc.start()
    proc.wait_ready()
    yield proc
    proc.close()


@pytest.fixture()
def commands(stack: Settings) -> Iterator[CommandReader]:
    reader = CommandReader(stack)
    yield reader
    reader.close()


def _names(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{prefix}-{tag}-{i}" for i in range(n)]


def _register_id(env: EventEnvelope) -> str:
    return command_id(ex.PM.name, event_cause(env), 0, "RegisterModel")


def _effects(container: Container, names: list[str]) -> dict[str, list[EventEnvelope]]:
    """Each model's stored events: the commands' effect, after the handler's dedupe."""
    loaded = container.store.load_many([model_id(n) for n in names])
    return {n: loaded[model_id(n)] for n in names}


def _wait_effects(
    container: Container, names: list[str], types: int = 1, timeout_s: float = 60.0
) -> dict[str, list[EventEnvelope]]:
    deadline = time.monotonic() + timeout_s
    while True:
        effects = _effects(container, names)
        if all(len(v) >= types for v in effects.values()) or time.monotonic() > deadline:
            return effects
        time.sleep(0.2)


def _end_total(s: Settings, topic: str) -> int:
    return sum(tp.offset for tp in end_offsets(s, topic))


def _request(container: Container, names: list[str], **kw: datetime) -> list[EventEnvelope]:
    return ex.request_jobs(container.store, names, **kw)


def test_commands_once_per_event_with_service_token(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    saga.ensure_running()
    names = _names("once", 20)
    envs = _request(container, names)
    ids = {_register_id(e) for e in envs}
    commands.wait_for(ids)
    effects = _wait_effects(container, names)
    for env, name in zip(envs, names, strict=True):
        (registered,) = effects[name]
        assert registered.type == "ModelRegistered"
        assert registered.causation_id == _register_id(env)
        assert registered.correlation_id == env.correlation_id  # the saga's correlation
        assert registered.actor == "saga:example"
    results = container.store.find_results(sorted(ids))
    assert {r.status for r in results.values()} == {"accepted"} and len(results) == len(ids)
    mine = [x for x in commands.sent if x.command_id in ids]
    auth = mine[0].headers["authorization"].decode()
    principal = authenticate(stack, auth)
    assert principal.subject == "saga:example"
    by_id = {x.command_id: x for x in mine}
    assert by_id[_register_id(envs[0])].headers["veritas.cause"] == event_cause(envs[0]).encode()


def test_overhead_per_event(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    """The runtime's own cost per event (load the aggregate, decide, publish with acks awaited),
    twice: in flow (the handlers, relay and projector busy with the same burst) and catching up
    on a quiet stack (handlers stopped, everything relayed), beside the same two operations done
    bare from this process at that moment."""
    saga.ensure_running()
    names = _names("cost", 100)
    sums0 = _histos(saga)
    envs: list[EventEnvelope] = []
    for chunk in range(0, 100, 10):  # small commits, so events arrive spread out
        envs += _request(container, names[chunk : chunk + 10])
        time.sleep(0.05)
    commands.wait_for({_register_id(e) for e in envs})
    time.sleep(0.5)
    in_flow = _per_event_ms(sums0, _histos(saga))

    assert saga.terminate() == 0
    handlers = [handler_name(i) for i in range(stack.command_handlers)]
    for name in handlers:
        supervisor.stop(stack, name)
    try:
        before = _end_total(stack, "training.events")
        quiet = _request(container, _names("quiet", 200))
        deadline = time.monotonic() + 60
        while _end_total(stack, "training.events") < before + 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(2.0)  # the projector is done with them too
        bare = {
            "bare_store_load_ms": round(_bare_load_ms(container, quiet), 3),
            "bare_produce_acked_ms": round(_bare_produce_ms(stack), 3),
        }
        saga.start()
        commands.wait_for({_register_id(e) for e in quiet}, timeout_s=120)
        time.sleep(0.5)
        catch_up = _per_event_ms(None, _histos(saga))
    finally:
        for name in handlers:
            supervisor.start(stack, name)
    record_measurement(
        stack, "per_event_ms_mean", {"in_flow": in_flow, "catch_up_quiet": {**catch_up, **bare}}
    )
    assert catch_up["handle"] < 100, catch_up
    _wait_effects(container, [e.payload["model_name"] for e in quiet], timeout_s=120)


def _per_event_ms(
    before: dict[str, tuple[float, float]] | None, after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    zero = (0.0, 0.0)
    return {
        k: round(
            1000
            * (v[0] - (before or {}).get(k, zero)[0])
            / max(1.0, v[1] - (before or {}).get(k, zero)[1]),
            3,
        )
        for k, v in after.items()
    }


def _bare_load_ms(container: Container, envs: list[EventEnvelope]) -> float:
    started = time.perf_counter()
    for e in envs:
        container.store.load(e.aggregate_id)
    return 1000 * (time.perf_counter() - started) / len(envs)


def _bare_produce_ms(s: Settings, n: int = 100) -> float:
    """One record produced (acks=all) and its delivery awaited, as the runtime does per event."""
    p = Producer({**kafka_conf(s), "acks": "all", "linger.ms": 0})
    p.produce("inference.feedback", value=b"warm-up")
    p.flush(10)
    started = time.perf_counter()
    for _ in range(n):
        p.produce("inference.feedback", value=b"{}")
        p.flush(10)
    return 1000 * (time.perf_counter() - started) / n


def _histos(saga: SagaProcess) -> dict[str, tuple[float, float]]:
    out = {}
    for what in ("handle", "load", "publish"):
        total = saga.metric(f"veritas_saga_{what}_seconds_sum")
        count = saga.metric(f"veritas_saga_{what}_seconds_count")
        out[what] = (total, count)
    return out


def test_kill9_mid_stream_loses_nothing_and_redelivers_same_ids(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    saga.ensure_running()
    handled0 = saga.metric(HANDLED)
    names = _names("kill", 300)
    envs: list[EventEnvelope] = []
    for i in range(0, 300, 10):
        envs += _request(container, names[i : i + 10])
    ids = {_register_id(e) for e in envs}
    deadline = time.monotonic() + 60
    while commands.count(ids) < 60 and time.monotonic() < deadline:
        commands.poll(0.05)
    handled_before_kill = saga.metric(HANDLED) - handled0
    saga.kill9()
    sent_at_kill = len({x.command_id for x in commands.sent if x.command_id in ids})
    assert 0 < sent_at_kill < 300, "the kill must land mid-stream"
    saga.start()
    commands.wait_for(ids, timeout_s=120)
    saga.wait_ready()
    effects = _wait_effects(container, names)
    for env, name in zip(envs, names, strict=True):
        assert [e.causation_id for e in effects[name]] == [_register_id(env)], name
    records = commands.count(ids)
    duplicates = records - len(ids)
    record_measurement(
        stack,
        "kill9_mid_stream",
        {
            "events": 300,
            "commands_before_kill": sent_at_kill,
            "command_records": records,
            "redelivered_duplicates": duplicates,
            "handled_before_kill": handled_before_kill,
            "handled_after_restart": saga.metric(HANDLED),  # redeliveries + the rest
        },
    )
    assert len({x.command_id for x in commands.sent if x.command_id in ids}) == 300


def test_sigterm_mid_stream_stops_gracefully(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    saga.ensure_running()
    handled0 = saga.metric(HANDLED)
    names = _names("term", 200)
    envs: list[EventEnvelope] = []
    for i in range(0, 200, 10):
        envs += _request(container, names[i : i + 10])
    ids = {_register_id(e) for e in envs}
    deadline = time.monotonic() + 60
    while commands.count(ids) < 40 and time.monotonic() < deadline:
        commands.poll(0.05)
    handled = saga.metric(HANDLED) - handled0
    assert saga.terminate() == 0
    saga.start()
    commands.wait_for(ids, timeout_s=120)
    saga.wait_ready()
    time.sleep(1.0)
    commands.poll()
    record_measurement(
        stack,
        "sigterm_mid_stream",
        {
            "events": 200,
            "handled_before_stop": handled,
            "redelivered_duplicates": commands.count(ids) - len(ids),
        },
    )
    effects = _wait_effects(container, names)
    assert all(len(v) == 1 for v in effects.values())


def test_restart_to_first_event_with_static_membership(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    times = []
    for _ in range(3):
        saga.ensure_running()
        time.sleep(1.5)  # idle, offsets committed
        saga.kill9()
        started = saga.start()
        (env,) = _request(container, _names("restart", 1))
        commands.wait_for({_register_id(env)}, timeout_s=120)
        got = next(x.seen_at for x in commands.sent if x.command_id == _register_id(env))
        times.append({"to_first_command_s": round(got - started, 2), **saga.startup()})
    graceful = []
    for _ in range(2):
        saga.ensure_running()
        t0 = time.monotonic()
        assert saga.terminate() == 0
        stop_s = time.monotonic() - t0
        started = saga.start()
        (env,) = _request(container, _names("restart", 1))
        commands.wait_for({_register_id(env)}, timeout_s=120)
        got = next(x.seen_at for x in commands.sent if x.command_id == _register_id(env))
        graceful.append(
            {
                "stop_s": round(stop_s, 2),
                "to_first_command_s": round(got - started, 2),
                **saga.startup(),
            }
        )
        saga.wait_ready()
        assert saga.metric(HANDLED) == 1, "a graceful stop commits: nothing is redelivered"
    record_measurement(
        stack,
        "restart_to_first_event_s",
        {
            "after_kill9": times,
            "median_after_kill9": statistics.median(t["to_first_command_s"] for t in times),
            "after_sigterm": graceful,
        },
    )
    assert max(t["to_first_command_s"] for t in times) < 30


def _produce(s: Settings, values: list[bytes], key: bytes) -> None:
    p = Producer({**kafka_conf(s)})
    for v in values:
        p.produce("training.events", key=key, value=v)
    assert p.flush(10) == 0


def _forged(env: EventEnvelope, **changes: object) -> EventEnvelope:
    body = env.to_json_dict()
    body.pop("hash")
    body.update(changes)
    return seal(body)


def test_records_not_in_the_store_are_skipped_and_counted(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    saga.ensure_running()
    (real,) = _request(container, _names("real", 1))
    commands.wait_for({_register_id(real)})
    skipped0 = saga.metric(SKIPPED, reason="not_in_store")
    new_aggregate = _forged(
        real, aggregate_id=str(uuid.uuid4()), payload={"model_name": "forged-a"}
    )
    other_event_id = _forged(real, event_id=str(uuid.uuid4()), payload={"model_name": "forged-b"})
    tampered = real.to_json_dict() | {"payload": {"model_name": "forged-c"}}  # hash kept
    forged = [new_aggregate, other_event_id]
    values = [e.to_bytes() for e in forged]
    values.append(EventEnvelope.model_validate(tampered).to_bytes())
    # (Undecodable records are covered by the unit tests: on a shared event topic they would also
    # land in the projector's rm_projection_errors, which other tests count.)
    _produce(stack, values, key=str(real.aggregate_id).encode())
    saga.wait_metric(SKIPPED, skipped0 + 3, reason="not_in_store")
    (after,) = _request(container, _names("after-forged", 1))
    commands.wait_for({_register_id(after)})
    forged_ids = {_register_id(e) for e in forged} | {
        command_id(ex.PM.name, event_cause(real), 0, "RegisterModel")
    }
    names = {x.payload.get("name") for x in commands.sent}
    assert not names & {"forged-a", "forged-b", "forged-c"}
    # the tampered copy of `real` is not a redelivery either: its content differs from the store
    assert commands.count(forged_ids) == 1  # only the real event's own command


def test_aborted_transaction_records_are_not_seen(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    saga.ensure_running()
    (real,) = _request(container, _names("pre-abort", 1))
    commands.wait_for({_register_id(real)})
    skipped0 = saga.metric(SKIPPED, reason="not_in_store")
    handled0 = saga.metric(HANDLED)
    forged = _forged(real, aggregate_id=str(uuid.uuid4()), payload={"model_name": "aborted-a"})
    p = transactional_producer(stack, f"t-abort-{uuid.uuid4()}", "admin")
    p.begin_transaction()
    for _ in range(5):
        p.produce("training.events", key=str(forged.aggregate_id), value=forged.to_bytes())
        p.produce("training.events", key=str(real.aggregate_id), value=real.to_bytes())
    p.flush(10)
    p.abort_transaction(10)
    assert _uncommitted_reader_sees(stack, forged), "the aborted records are on the topic"
    (after,) = _request(container, _names("post-abort", 1))
    commands.wait_for({_register_id(after)})
    time.sleep(1.0)
    assert saga.metric(SKIPPED, reason="not_in_store") == skipped0
    assert saga.metric(HANDLED) == handled0 + 1  # only `after`: no aborted copy of `real` either
    assert "aborted-a" not in {x.payload.get("name") for x in commands.sent}


def _uncommitted_reader_sees(s: Settings, env: EventEnvelope) -> bool:
    c = Consumer(
        {
            **kafka_conf(s),
            "group.id": f"t-{uuid.uuid4()}",
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    parts = c.list_topics("training.events", timeout=10).topics["training.events"].partitions
    tps = []
    for p in parts:
        tp = TopicPartition("training.events", p)
        low, high = c.get_watermark_offsets(tp, timeout=10)
        tps.append(TopicPartition("training.events", p, max(low, high - 50)))
    c.assign(tps)
    want = env.to_bytes()
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                if not m.error() and m.value() == want:
                    return True
        return False
    finally:
        c.close()


def test_timers_fire_once_and_survive_a_restart(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    saga.ensure_running()
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    (kept, closed) = _names("timer", 2)
    envs = _request(container, [kept, closed], remind_at=due)
    commands.wait_for({_register_id(e) for e in envs})
    saga.wait_metric("veritas_saga_timers_pending", 2)
    ex.close_job(container.store, envs[1].aggregate_id)
    time.sleep(1.0)
    saga.kill9()  # before the reminder is due: only the store knows about it now
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 1.0)
    saga.start()
    fired_id = command_id(
        ex.PM.name,
        timer_cause(TimerFired(envs[0].aggregate_id, ex.REMIND, due)),
        0,
        "UpdateModelMetadata",
    )
    commands.wait_for({fired_id}, timeout_s=90)
    saga.wait_ready()
    time.sleep(3.0)  # no second firing within the process
    commands.poll()
    assert commands.count({fired_id}) == 1
    effects = _wait_effects(container, [kept], types=2)
    assert [e.type for e in effects[kept]] == ["ModelRegistered", "ModelMetadataUpdated"]
    assert effects[kept][1].causation_id == fired_id
    closed_id = command_id(
        ex.PM.name,
        timer_cause(TimerFired(envs[1].aggregate_id, ex.REMIND, due)),
        0,
        "UpdateModelMetadata",
    )
    assert closed_id not in commands.ids()
    assert saga.metric("veritas_saga_timers_fired_total") >= 1


def test_a_postgres_outage_is_waited_out_not_skipped(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    saga.ensure_running()
    before = _end_total(stack, "training.events")
    names = _names("pgdown", 300)
    envs: list[EventEnvelope] = []
    for i in range(0, 300, 50):
        envs += _request(container, names[i : i + 50])
    deadline = time.monotonic() + 60
    while _end_total(stack, "training.events") < before + 300 and time.monotonic() < deadline:
        time.sleep(0.1)  # every event on the topic before Postgres goes away
    ids = {_register_id(e) for e in envs}
    while commands.count(ids) < 10 and time.monotonic() < deadline:
        commands.poll(0.05)
    skipped0 = saga.metric(SKIPPED, reason="not_in_store")
    killed_at = time.time()
    services.kill_service(stack, "postgres")  # the supervisor starts it again
    while not pg.is_ready(stack.dsn):
        assert time.time() - killed_at < 120
        time.sleep(0.05)
    back_at = time.time()
    commands.wait_for(ids, timeout_s=180)
    mine = [x for x in commands.sent if x.command_id in ids]
    after = sum(1 for x in mine if x.produced_at > back_at)
    record_measurement(
        stack,
        "postgres_outage",
        {
            "outage_s": round(back_at - killed_at, 2),
            "commands_sent_before_kill": sum(1 for x in mine if x.produced_at < killed_at),
            "commands_sent_after_restart": after,
            "load_retries": saga.metric("veritas_saga_retries_total", what="load"),
        },
    )
    assert after > 0, "the outage must land mid-stream"
    assert saga.running
    assert saga.metric(SKIPPED, reason="not_in_store") == skipped0
    effects = _wait_effects(container, names, timeout_s=120)
    assert all(len(v) == 1 for v in effects.values())


def test_a_policy_error_is_fatal_and_the_event_is_not_acked(
    saga: SagaProcess, commands: CommandReader, container: Container, stack: Settings
) -> None:
    """Last in the module: the poison event stays unacked, so every restart meets it again."""
    saga.ensure_running()
    _request(container, _names("poison", 1))
    assert saga.wait_exit(60) == 70
    saga.start()
    assert saga.wait_exit(90) == 70, "redelivered after the crash: the event was not acked"

"""The process-manager (saga) runtime on faust-streaming: one faust worker per saga, consuming
event topics, deciding with a pure policy and publishing commands to the command topics.

How a saga plugs in: define a `sagas.model.ProcessManager` (state loader, policy, optional timers
and the start-up query for open aggregates) and run it with `run(pm)` from the saga's module, so
the supervisor starts it as `python -m <module>`. The truth is always the event store.

Why it is built this way (each point measured here with faust-streaming 0.15.3 and Kafka 4.1.2):

* **Agent concurrency 1, manual acks.** With concurrency > 1 faust commits offsets past messages
  still in flight (faust-streaming#606), so a crash loses them. And faust acks an event in a
  `finally` when the agent's iteration ends, even by an exception or a cancel; the agent therefore
  iterates `stream.noack()` and acks an event only after its commands are acked by the broker.
* **at_least_once, not exactly_once.** faust's exactly_once still gave 567-1,335 duplicates to a
  read_committed reader after a kill -9 (#517, #323). Instead every command id is derived from its
  cause (the triggering event's id, or the timer's aggregate, key and due time) and its position,
  so a redelivery produces the same ids and the command handler's results table dedupes them
  (guarantee 2). The policy sees the aggregate as of the triggering event, so a redelivered event
  is decided the same way however far the aggregate has moved on.
* **No faust tables.** Table recovery is fragile (#651) and only `memory://` stores exist here:
  state is loaded from the Postgres event store for every event (in a thread, never blocking the
  loop), and timers are facts in the aggregates' events, re-indexed from the store at start.
* **The store confirms every record.** A record is acted on only if the store holds exactly that
  event (aggregate id, version, event_id, hash and content); anything else (forged, tampered, a
  stray record) is skipped and counted. The policy gets the stored envelope, not the message.
* **read_committed, and offsets that keep up.** The relay writes the event topics in Kafka
  transactions. faust 0.15.3 reads read_uncommitted unless it runs exactly_once and has no
  setting for it, and its gap bookkeeping around transaction markers made each commit advance by
  one relay transaction only (140 events redelivered after a clean SIGTERM). workers.sagas.transport
  fixes both (`veritas-kafka://` broker URLs).
* **Static membership, short session timeout.** A restarted worker rejoins with the same
  group.instance.id and gets its partitions back without a rebalance: measured 1.1-1.6 s from
  the faust worker starting to its partitions assigned after a kill -9 (a restart waited out
  63 s with faust's defaults); the rest of a restart is the process's own start-up. Offsets are
  committed every saga_commit_interval_s, which bounds what a kill -9 redelivers.
* **No topic declaration, no leader topic, no web server.** Auto-create is off on the broker and
  topics are code (`veritas init`); metrics are served by prometheus_client on 127.0.0.1.
* **Faults.** Store reads retry transient faults for as long as it takes (an event is never
  skipped for an outage); publishes retry for a bounded time; anything else (a bug in a policy,
  a producer that cannot publish) ends the process with EXIT_FATAL without acking the event, and
  the supervisor restarts it. SIGTERM stops gracefully: the event in hand finishes, acked offsets
  are committed (nothing is redelivered after it).
* **One instance per saga, for now.** The timer heap is per process: a second instance would fire
  every timer again (harmless, the same ids, but wasted), and timers cannot yet follow partition
  ownership (the relay partitions with librdkafka's hash, not aiokafka's).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, NoReturn, TypeVar, cast
from uuid import UUID

import faust
from prometheus_client import start_http_server
from pydantic import ValidationError

from config.settings import Settings
from events.envelope import EventEnvelope
from infra import logs
from infra.faults import transient
from infra.postgres.eventstore import PostgresEventStore, datastore_from_dsn
from sagas.model import (
    ProcessManager,
    S,
    Timer,
    TimerFired,
    event_cause,
    stored_match,
    timer_cause,
)
from veritas.bootstrap import Container, bootstrap
from workers.recovery import EXIT_FATAL
from workers.sagas import metrics as m
from workers.sagas.app import make_app
from workers.sagas.principal import ServiceToken
from workers.sagas.publish import CommandPublisher
from workers.sagas.timers import TimerBook

log = logging.getLogger("veritas.saga")
T = TypeVar("T")


class Runtime(Generic[S]):
    """One process manager on one faust App: the event agent, the timer heap and its timer."""

    def __init__(self, pm: ProcessManager[S], container: Container, instance: int = 0) -> None:
        self.pm = pm
        self.container = container
        self.settings = container.settings
        self.app = make_app(self.settings, pm.group_id, instance)
        self.book = TimerBook()
        self.token = ServiceToken(self.settings, pm.subject, pm.roles)
        self.publisher = CommandPublisher(self.app, pm.name, self.token, self.settings)
        self.pool = ThreadPoolExecutor(2, thread_name_prefix=f"saga-{pm.name}")
        self.timers_rebuilt = False
        self._label = pm.name
        source = self.app.topic(*pm.topics, key_serializer="raw", value_serializer="raw")
        self.app.agent(source, name=f"{pm.group_id}.events", concurrency=1)(self._agent)
        self.app.timer(self.settings.saga_timer_interval_s)(self._fire_due)
        self.app.task(self._rebuild_timers)
        self.app.on_partitions_assigned.connect(cast(Any, self._on_assigned))
        self._first_event_logged = False

    async def _on_assigned(self, sender: Any, *args: Any, signal: Any, **_: Any) -> None:
        log.info("partitions assigned: %d", len(args[0]) if args else 0)

    # Events ---------------------------------------------------------------------------------

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        manual = cast("faust.Stream[bytes]", stream).noack()
        async for event in manual.events():
            try:
                await self.handle(event.value)
            except asyncio.CancelledError:
                raise  # stopping: the event stays unacked and is redelivered
            except Exception as exc:
                self._fatal("handling an event", exc)
            await manual.ack(event)

    async def handle(self, raw: bytes | None) -> None:
        """Decide on one record: confirm it against the store, run the policy on the aggregate as
        of that event, publish its commands and refresh the aggregate's timers."""
        started = time.perf_counter()
        try:
            env = EventEnvelope.from_bytes(raw or b"")
        except (ValidationError, ValueError):
            m.SKIPPED.labels(self._label, "undecodable").inc()
            log.warning("skipped a record that is not an event envelope")
            return
        if not self.pm.wants(env):
            m.IGNORED.labels(self._label).inc()
            return
        events = await self._load(env.aggregate_id)
        stored = stored_match(events, env)
        if stored is None:
            m.SKIPPED.labels(self._label, "not_in_store").inc()
            log.warning(
                "skipped %s v%d (event %s): the event store does not hold it",
                env.aggregate_id,
                env.version,
                env.event_id,
            )
            return
        with logs.correlated(stored.correlation_id):
            state = self.pm.load_state(events[: stored.version])
            commands = self.pm.policy(state, stored)
            await self.publisher.publish(commands, event_cause(stored), stored.correlation_id)
            now = state if stored.version == len(events) else self.pm.load_state(events)
            self._set_timers(env.aggregate_id, len(events), list(self.pm.timers(now)))
        m.HANDLED.labels(self._label).inc()
        if not self._first_event_logged:
            self._first_event_logged = True
            log.info("first event handled")
        m.HANDLE_SECONDS.labels(self._label).observe(time.perf_counter() - started)

    # Timers ---------------------------------------------------------------------------------

    def _set_timers(self, aggregate_id: UUID, version: int, timers: list[Timer]) -> None:
        self.book.replace(aggregate_id, version, timers)
        m.TIMERS_PENDING.labels(self._label).set(len(self.book))

    async def _rebuild_timers(self) -> None:
        """At start: the open aggregates' due times, from the store."""
        try:
            ids = await self._in_thread(
                "open aggregates", lambda: list(self.pm.open_aggregates(self.container))
            )
            for i in range(0, len(ids), 200):
                load = partial(self.container.store.load_many, ids[i : i + 200])
                loaded = await self._in_thread("load aggregates", load)
                for agg, events in loaded.items():
                    if events:
                        timers = list(self.pm.timers(self.pm.load_state(events)))
                        self._set_timers(agg, len(events), timers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fatal("rebuilding the timers", exc)
        self.timers_rebuilt = True
        log.info("timers rebuilt: %d open across %d aggregates", len(self.book), len(ids))

    async def _fire_due(self) -> None:
        try:
            for agg, timer in self.book.pop_due(datetime.now(UTC)):
                await self._fire(agg, timer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fatal("firing a timer", exc)

    async def _fire(self, aggregate_id: UUID, timer: Timer) -> None:
        events = await self._load(aggregate_id)
        if not events:
            return
        state = self.pm.load_state(events)
        timers = list(self.pm.timers(state))
        if timer in timers:  # still due: the state has not moved past it meanwhile
            fired = TimerFired(aggregate_id, timer.key, timer.due_at)
            with logs.correlated(events[-1].correlation_id):
                commands = self.pm.policy(state, fired)
                await self.publisher.publish(
                    commands, timer_cause(fired), events[-1].correlation_id
                )
            m.TIMERS_FIRED.labels(self._label).inc()
        self._set_timers(aggregate_id, len(events), timers)

    # Store and producer ---------------------------------------------------------------------

    async def _load(self, aggregate_id: UUID) -> list[EventEnvelope]:
        started = time.perf_counter()
        events = await self._in_thread("load", lambda: self.container.store.load(aggregate_id))
        m.LOAD_SECONDS.labels(self._label).observe(time.perf_counter() - started)
        return events

    async def _in_thread(self, what: str, fn: Callable[[], T]) -> T:
        """Run blocking I/O on the runtime's threads; transient faults (Postgres restarting or
        unreachable) are retried with backoff for as long as it takes."""
        loop = asyncio.get_running_loop()
        delay = 0.1
        while True:
            try:
                return await loop.run_in_executor(self.pool, fn)
            except Exception as exc:
                if not transient(exc):
                    raise
                m.RETRIES.labels(self._label, what).inc()
                log.warning(
                    "%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _fatal(self, what: str, exc: BaseException) -> NoReturn:
        """Exit at once, without acking or committing anything more: the event in hand is
        redelivered to the fresh process the supervisor starts."""
        log.critical("fatal error %s, exiting for the supervisor to restart", what, exc_info=exc)
        logging.shutdown()
        os._exit(EXIT_FATAL)


def run(pm: ProcessManager[Any], settings: Settings | None = None) -> NoReturn:
    """The saga's process: `python -m <module>` whose `__main__` calls this."""
    s = settings or Settings()
    name = f"saga-{pm.name}"
    logs.configure(name, s.log_level)
    for noisy in ("faust", "mode", "aiokafka", "workers.sagas.transport"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # faust's level is spelled "warn"
    from workers.base import WORKER

    WORKER.info({"name": name, "pid": str(os.getpid())})
    start_http_server(s.saga_metrics_base + pm.metrics_slot, addr="127.0.0.1")
    # The tables are `veritas init`'s, as the topics are: no DDL here (it would race other
    # processes starting at the same time). A missing table is a fatal error at the first load.
    store = PostgresEventStore(datastore_from_dsn(s.dsn, s.db_schema))
    container = bootstrap(s, store=store)
    runtime = Runtime(pm, container)
    worker = faust.Worker(
        runtime.app,
        loglevel="warn",
        quiet=True,
        override_logging=False,  # infra.logs above: JSON lines, no secrets
        redirect_stdouts=False,
    )
    worker.spinner = None  # no terminal escapes in the supervisor's log
    log.info("saga %s: faust worker starting", pm.name)
    worker.execute_from_commandline()  # exits 0 after SIGTERM, non-zero after a crash

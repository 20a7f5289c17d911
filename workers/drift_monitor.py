"""The drift monitor: a faust worker (`python -m workers.drift_monitor`) that joins
inference.requests to inference.results, windows each served version's inputs, checks every
window against the version's training reference with Evidently (ml.drift) and records it with
RecordDriftCheck; it joins inference.feedback to the predictions and records accuracy windows
with RecordAccuracy. The Monitor aggregate decides the alarms and the retraining trigger.

As the saga runtime (workers/sagas/runtime.py): agent concurrency 1, at_least_once, manual acks.
A record is acked only when every record before it in its partition is done (its window recorded,
or it was dropped), so the committed offset never passes an uncounted row; after a kill -9 the
rows are read again and those the event store already counts are skipped (window ids and the
counted positions come from the Monitor's events). A window's command id comes from (model,
version, window id), and its outcome is read back from the store, which is the truth. Torch is
never imported here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar, cast

import faust
from prometheus_client import Counter, Gauge, start_http_server

from config.services import SAGA_SLOTS
from config.settings import Settings
from infra import logs
from infra.postgres.eventstore import PostgresEventStore, datastore_from_dsn
from ml.store import ArtifactStore
from monitoring.joining import Acknowledger, Joiner, Pos, Row
from monitoring.windows import VersionWindows, bounds, frame
from sagas.model import OutgoingCommand, command_id
from veritas.bootstrap import bootstrap
from workers.monitor_state import (
    ModelState,
    VersionInfo,
    accuracy_payload,
    labelled_row,
    load_model_state,
    load_version,
    recorded_positions,
    wait_result,
)
from workers.recovery import EXIT_FATAL
from workers.sagas.app import make_app
from workers.sagas.principal import ServiceToken
from workers.sagas.publish import CommandPublisher

log = logging.getLogger("veritas.monitor")
T = TypeVar("T")
NAME = "drift-monitor"
TOPICS = ("inference.requests", "inference.results", "inference.feedback")
SCORE = Gauge(
    "veritas_model_drift_score", "Share of drifted features, last window", ["model", "version"]
)
ACCURACY = Gauge(
    "veritas_model_accuracy", "Live accuracy from feedback, last window", ["model", "version"]
)
VALIDATION = Gauge(
    "veritas_model_validation_accuracy", "The version's validation accuracy", ["model", "version"]
)
WINDOWS = Counter(
    "veritas_drift_windows_total", "Drift windows recorded", ["model", "version", "severity"]
)
INPUTS = Counter("veritas_monitored_inputs_total", "Served inputs joined and windowed", ["model"])
DROPPED = Counter("veritas_monitor_dropped_total", "Records not windowed", ["reason"])


class DriftMonitor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.container = bootstrap(
            settings, store=PostgresEventStore(datastore_from_dsn(settings.dsn, settings.db_schema))
        )
        self.store = self.container.store
        self.artifacts = ArtifactStore(settings.artifacts_dir)
        # Open windows hold their records unacked: a stop does not wait for them (they are read
        # again, and a window is recorded once by its id).
        self.app = make_app(settings, "veritas-drift-monitor", wait_empty=False)
        self.publisher = CommandPublisher(
            self.app, NAME, ServiceToken(settings, f"monitor:{NAME}", ["service"]), settings
        )
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="monitor")
        self.joiner = Joiner()
        self.acks = Acknowledger()
        self.models: dict[str, ModelState] = {}
        self.versions: dict[tuple[str, str], VersionInfo | None] = {}
        self.drift: dict[tuple[str, str], VersionWindows] = {}
        self.accuracy: dict[tuple[str, str], VersionWindows] = {}
        self.predictions: OrderedDict[str, Row] = OrderedDict()
        self.stream: Any = None
        # The agent and the timer share the windows: one of them at a time.
        self.lock = asyncio.Lock()
        source = self.app.topic(*TOPICS, key_serializer="raw", value_serializer="raw")
        self.app.agent(source, name="veritas-drift-monitor.inputs", concurrency=1)(self._agent)
        self.app.timer(1.0)(self._tick)

    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        self.stream = cast("faust.Stream[bytes]", stream).noack()
        async for event in self.stream.events():
            try:
                async with self.lock:
                    await self.handle(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                fatal("handling a record", exc)

    async def handle(self, event: Any) -> None:
        msg = event.message
        pos: Pos = (msg.topic, msg.partition, msg.offset)
        self.acks.track(pos, event)
        now = time.monotonic()
        if msg.topic == "inference.feedback":
            await self._feedback(pos, event.value, now)
            return
        got = self.joiner.add(msg.topic, pos, event.value, now)
        if got is False:
            DROPPED.labels("unusable").inc()
            await self._release([pos])
        elif isinstance(got, Row):
            await self._drift_row(got, now)

    async def _tick(self) -> None:
        if self.lock.locked():
            return  # the agent is busy with a window; the next tick looks again
        try:
            async with self.lock:
                expired = self.joiner.expire(time.monotonic())
                DROPPED.labels("unjoined").inc(len(expired))
                await self._release(expired)
                for key, vw in list(self.drift.items()):
                    if self.models[key[0]].policy.get("window_max_age_s"):  # time windows
                        await self._maybe_check(key, vw, time.monotonic())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            fatal("the window timer", exc)

    # Drift ----------------------------------------------------------------------------------

    async def _drift_row(self, row: Row, now: float) -> None:
        key = (row.model_name, row.version)
        self.predictions[row.request_id] = row
        while len(self.predictions) > 200_000:
            self.predictions.popitem(last=False)
        vw = await self._windows(key, self.drift, "drift")
        if vw is None or not vw.add(row):
            await self._release([row.request_pos, row.result_pos])
            return
        INPUTS.labels(row.model_name).inc()
        await self._maybe_check(key, vw, now)

    async def _maybe_check(self, key: tuple[str, str], vw: VersionWindows, now: float) -> None:
        model = self.models[key[0]]
        rows = vw.due(model.policy, now)
        info = self.versions.get(key)
        if rows is None or info is None or info.checker is None:
            return
        window_id = vw.last_id + 1
        checker = info.checker
        result = await self._io(lambda: checker.check(frame(rows, info.feature_names)))
        report = None
        if result.severity is not None:
            html = await self._io(lambda: checker.html(frame(rows, info.feature_names)))
            report = await self._io(lambda: self.artifacts.put_bytes(html))
        payload = {
            "model_name": key[0],
            "version": key[1],
            "window_id": window_id,
            "score": result.share_drifted,
            "severity": result.severity,
            "per_feature": {k: v.model_dump() for k, v in result.per_feature.items()},
            "drifted": result.drifted,
            "bounds": bounds(rows),
            "method": {
                "warning": checker.warning,
                "critical": checker.critical,
                "methods": checker.methods,
                "n_reference": result.n_reference,
                "evidently": result.evidently_version,
            },
            "report_sha256": report,
        }
        await self._record("RecordDriftCheck", "DriftChecked", key, window_id, payload, vw)
        SCORE.labels(*key).set(result.share_drifted)
        WINDOWS.labels(*key, result.severity or "none").inc()

    # Accuracy -------------------------------------------------------------------------------

    async def _feedback(self, pos: Pos, raw: bytes | None, now: float) -> None:
        import orjson

        try:
            body = orjson.loads(raw or b"")
            row = self.predictions.get(str(body["request_id"]))
            label = body["label"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            row, label = None, None
        if row is None:
            DROPPED.labels("feedback_unmatched").inc()
            await self._release([pos])
            return
        key = (row.model_name, row.version)
        labelled = labelled_row(row, label, pos, now)
        vw = await self._windows(key, self.accuracy, "accuracy")
        if vw is None or not vw.add(labelled):
            await self._release([pos])
            return
        rows = vw.due(
            {
                **self.models[key[0]].policy,
                "window_size": self.models[key[0]].policy["accuracy_window"],
            },
            now,
        )
        if rows is None:
            return
        window_id = vw.last_id + 1
        payload = accuracy_payload(key, window_id, rows)
        await self._record("RecordAccuracy", "AccuracyRecorded", key, window_id, payload, vw)
        ACCURACY.labels(*key).set(payload["correct"] / len(rows))

    # Shared ---------------------------------------------------------------------------------

    async def _windows(
        self, key: tuple[str, str], book: dict[tuple[str, str], VersionWindows], kind: str
    ) -> VersionWindows | None:
        if key[0] not in self.models:
            self.models[key[0]] = await self._io(lambda: load_model_state(self.store, key[0]))
        model = self.models[key[0]]
        if key not in self.versions:
            self.versions[key] = await self._io(
                lambda: load_version(self.store, self.artifacts, key[0], key[1], model.policy)
            )
            info = self.versions[key]
            if info is not None and info.validation_accuracy is not None:
                VALIDATION.labels(*key).set(info.validation_accuracy)
        if self.versions[key] is None or not model.policy["enabled"]:
            return None
        if key not in book:
            last = model.drift_last if kind == "drift" else model.accuracy_last
            counted = model.drift_counted if kind == "drift" else model.accuracy_counted
            book[key] = VersionWindows(
                key[0], key[1], last.get(key[1], 0), counted.get(key[1], set())
            )
        return book[key]

    async def _record(
        self,
        ctype: str,
        etype: str,
        key: tuple[str, str],
        window_id: int,
        payload: dict[str, Any],
        vw: VersionWindows,
    ) -> None:
        """Send the window's command, wait for its outcome in the store, and count what the
        store holds for that window id (a window recorded by an earlier process, with other rows,
        included)."""
        cause = f"window/{etype}/{key[0]}/{key[1]}/{window_id}"
        cmd = OutgoingCommand(ctype, payload, key[0])
        await self.publisher.publish([cmd], cause, None)
        cid = command_id(NAME, cause, 0, ctype)
        result = await self._io(lambda: wait_result(self.store, cid))
        held = await self._io(
            lambda: recorded_positions(self.store, key[0], etype, key[1], window_id)
        )
        if held is None:  # refused (e.g. the version is gone): these rows are dropped
            log.warning("%s %s window %d refused: %s", ctype, key, window_id, result)
            held = {r.result_pos for r in vw.rows[: int(payload["bounds"]["rows"])]}
            vw.last_id = window_id - 1
        taken = vw.recorded(window_id, held)
        await self._release([p for r in taken for p in {r.request_pos, r.result_pos}])

    async def _release(self, positions: list[Pos]) -> None:
        for event in self.acks.finish(positions):
            await self.stream.ack(event)

    async def _io(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn)


def fatal(what: str, exc: BaseException) -> NoReturn:
    log.critical("fatal error %s, exiting for the supervisor to restart", what, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_FATAL)


def main() -> NoReturn:
    s = Settings()
    logs.configure(NAME, s.log_level)
    for noisy in ("faust", "mode", "aiokafka", "workers.sagas.transport"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from workers.base import WORKER

    WORKER.info({"name": NAME, "pid": str(os.getpid())})
    start_http_server(s.saga_metrics_base + SAGA_SLOTS[NAME], addr="127.0.0.1")
    monitor = DriftMonitor(s)
    worker = faust.Worker(
        monitor.app, loglevel="warn", quiet=True, override_logging=False, redirect_stdouts=False
    )
    worker.spinner = None
    worker.execute_from_commandline()
    raise SystemExit(0)


if __name__ == "__main__":
    main()

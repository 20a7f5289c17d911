"""Training step worker: consume step commands from training.steps, run each (steps.execute:
torch only in child processes), and report its outcome with RecordStepResult on
training.commands. `python -m workers.training_steps`.

At least once, with no effect twice: the consumed offset is committed only after the result is
on Kafka, so a step killed midway is run again; every command a step sends has an id derived from
the step command (its attempt included), so the command handler answers repeats with the stored
result, and a step command whose result is already stored is skipped. Only the saga's service
principal may send step commands: anything else is dead-lettered.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from confluent_kafka import Consumer, Message, Producer
from prometheus_client import Counter, Histogram

from commands.catalog import topic_for
from domain.rbac import AuthError, Role
from infra.auth import authenticate
from infra.kafka import headers, where
from sagas.model import OutgoingCommand, envelope_bytes
from steps.context import StepContext
from steps.execute import execute
from veritas.bootstrap import Container, bootstrap
from workers.base import main, start_worker
from workers.sagas.principal import ServiceToken

log = logging.getLogger("veritas.training_steps")
STEPS = Counter("veritas_training_steps_total", "Step attempts run", ["step", "kind", "outcome"])
STEP_SECONDS = Histogram(
    "veritas_training_step_seconds",
    "Duration of a step attempt",
    ["step", "kind"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
TOPIC = "training.steps"


class StepWorker:
    def __init__(self, container: Container) -> None:
        s = self.settings = container.settings
        self.container = container
        self.store = container.store
        self.consumer = Consumer(
            container.kafka_config(
                **{
                    "group.id": "veritas-training-steps",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": s.kafka_session_timeout_ms,
                    # A step (training) may run for many minutes between two polls.
                    "max.poll.interval.ms": 3_600_000,
                }
            )
        )
        self.consumer.subscribe([TOPIC])
        self.producer = Producer(
            container.kafka_config(**{"enable.idempotence": True, "linger.ms": 1})
        )
        self.token = ServiceToken(s, "svc:training-steps", [Role.SERVICE.value])

    def send(self, ctype: str, payload: dict[str, Any], key: str, command_id: str) -> None:
        body = envelope_bytes(
            OutgoingCommand(ctype, payload, key), command_id, None, datetime.now(UTC)
        )
        self.producer.produce(
            topic_for(ctype), key=key, value=body, headers=[("authorization", self.token.header())]
        )
        if self.producer.flush(self.settings.kafka_call_timeout_s) > 0:
            raise ConnectionError(f"{ctype} {command_id} did not reach Kafka")

    def _trusted(self, msg: Message) -> bool:
        auth = next((v.decode() for k, v in headers(msg) if k.lower() == "authorization"), None)
        try:
            return Role.SERVICE in authenticate(self.settings, auth).roles
        except AuthError:
            return False

    def handle(self, msg: Message) -> None:
        if not self._trusted(msg):
            log.warning(
                "step command from %s without the service role: dead-lettered",
                "/".join(map(str, where(msg))),
            )
            self.producer.produce(
                "commands.dlq",
                key=msg.key(),
                value=msg.value(),
                headers=[("dlq.reason", b"forbidden")],
            )
            self.producer.flush(self.settings.kafka_call_timeout_s)
            return
        env = json.loads(msg.value() or b"{}")
        cmd, result_id = env["payload"], f"step-result-{env['command_id']}"
        if self.store.find_results([result_id]):
            return  # reported before a crash: nothing to run again
        deadline_at = self._dispatched(cmd)
        if deadline_at is None:
            return
        cmd["deadline_at"] = deadline_at
        outcome = self._run(env["command_id"], cmd)
        if datetime.now(UTC) > datetime.fromisoformat(cmd["deadline_at"]):
            # Past its deadline the attempt belongs to the orchestrator's timer (a timeout, then
            # a retry): a late result would race it.
            log.warning(
                "%s %s attempt %d finished after its deadline: not reported",
                cmd["kind"],
                cmd["step"],
                cmd["attempt"],
            )
            return
        fields = {k: cmd[k] for k in ("step", "attempt", "kind")}
        self.send(
            "RecordStepResult",
            {"run_id": cmd["saga_id"], **fields, **outcome},
            cmd["saga_id"],
            result_id,
        )

    def _dispatched(self, cmd: dict[str, Any]) -> str | None:
        """The attempt's deadline once its dispatch is in the event store (the step command and
        the DispatchStep command travel side by side); None when the saga never dispatched it or
        has already moved past it: then nothing runs."""
        which = (cmd["step"], cmd["attempt"], cmd["kind"])
        end = time.monotonic() + self.settings.training_dispatch_wait_s
        while time.monotonic() < end:
            deadline, done = None, False
            for e in self.store.load(UUID(cmd["saga_id"])):
                here = (e.payload.get("step"), e.payload.get("attempt"), e.payload.get("kind"))
                if here != which:
                    continue
                if e.type == "StepDispatched":
                    deadline = str(e.payload["deadline_at"])
                elif e.type in ("StepSucceeded", "StepFailed", "StepTimedOut"):
                    done = True
            if done:
                return None
            if deadline is not None:
                return deadline
            time.sleep(0.02)
        log.warning(
            "%s %s attempt %d of %s was never dispatched: not run",
            cmd["kind"],
            cmd["step"],
            cmd["attempt"],
            cmd["saga_id"],
        )
        return None

    def _run(self, cid: str, cmd: dict[str, Any]) -> dict[str, Any]:
        left = (datetime.fromisoformat(cmd["deadline_at"]) - datetime.now(UTC)).total_seconds()
        fields = {k: cmd[k] for k in ("step", "attempt", "kind")}

        def progress(line: dict[str, Any]) -> None:
            point: dict[str, Any] = {k: line[k] for k in ("epoch", "loss", "accuracy") if k in line}
            if line.get("holdout_accuracy") is not None:
                point["holdout_accuracy"] = line["holdout_accuracy"]
            payload = {"run_id": cmd["saga_id"], **fields, **point}
            self.send(
                "RecordTrainingProgress",
                payload,
                cmd["saga_id"],
                f"step-progress-{cid}-{line['epoch']}",
            )

        ctx = StepContext(
            self.settings,
            self.store,
            self.send,
            self.container.read_model_connection,
            progress,
            time.monotonic() + left,
        )
        with STEP_SECONDS.labels(cmd["step"], cmd["kind"]).time():
            outcome = execute(cmd, ctx)
        STEPS.labels(cmd["step"], cmd["kind"], outcome["outcome"]).inc()
        log.info(
            "%s %s attempt %d of %s: %s",
            cmd["kind"],
            cmd["step"],
            cmd["attempt"],
            cmd["saga_id"],
            outcome["outcome"],
        )
        return outcome

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(self.settings.kafka_call_timeout_s)


def run(container: Container) -> None:
    stopper = start_worker(container, "training-steps")
    worker = StepWorker(container)
    log.info("training step worker started")
    while not stopper.stopped:
        msg = worker.consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        worker.handle(msg)  # raises on a dependency away: the supervisor restarts, it is re-read
        worker.consumer.commit(message=msg, asynchronous=False)
    worker.close()


if __name__ == "__main__":
    main(lambda: run(bootstrap()))

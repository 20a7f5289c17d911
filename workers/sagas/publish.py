"""Publishing a decision's commands: DESIGN's command envelope with a deterministic command id,
the service principal's JWT in the `authorization` header, through faust's producer (acks=all),
awaited until the broker has acked every record, because only then is the triggering event acked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from commands.catalog import topic_for
from config.settings import Settings
from sagas.model import OutgoingCommand, command_id, envelope_bytes
from workers.sagas import metrics as m
from workers.sagas.principal import ServiceToken

log = logging.getLogger("veritas.saga")
Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


class PublishFailed(Exception):
    """The broker did not take a decision's commands within the budget (fatal for the worker)."""


class CommandPublisher:
    def __init__(self, app: faust.App, saga: str, token: ServiceToken, settings: Settings) -> None:
        self.app = app
        self.saga = saga
        self.token = token
        self.budget_s = 3 * settings.kafka_call_timeout_s

    def messages(
        self, commands: Sequence[OutgoingCommand], cause: str, correlation_id: str | None
    ) -> list[Message]:
        """The Kafka records of one decision: the ids depend only on the saga, the cause and each
        command's position and type."""
        issued_at = datetime.now(UTC)
        auth = self.token.header()
        out: list[Message] = []
        for i, cmd in enumerate(commands):
            cid = command_id(self.saga, cause, i, cmd.type)
            headers = [
                ("authorization", auth),
                ("veritas.saga", self.saga.encode()),
                ("veritas.cause", cause.encode()),
            ]
            value = envelope_bytes(cmd, cid, correlation_id, issued_at)
            out.append((cmd.topic or topic_for(cmd.type), cmd.key.encode(), value, headers))
        return out

    async def publish(
        self, commands: Sequence[OutgoingCommand], cause: str, correlation_id: str | None
    ) -> None:
        """Send and await the acks; retry the whole decision (same ids) on a broker error for up
        to budget_s, then PublishFailed."""
        if not commands:
            return
        msgs = self.messages(commands, cause, correlation_id)
        started = time.perf_counter()
        budget = time.monotonic() + self.budget_s
        delay = 0.1
        while True:
            try:
                await self._send_all(msgs)
                break
            except (KafkaError, ProducerSendError) as exc:
                if time.monotonic() > budget:
                    raise PublishFailed(f"commands for {cause}: {exc}") from exc
                m.RETRIES.labels(self.saga, "publish").inc()
                log.warning("publish failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        m.PUBLISH_SECONDS.labels(self.saga).observe(time.perf_counter() - started)
        for cmd in commands:
            m.COMMANDS.labels(self.saga, cmd.type).inc()

    async def _send_all(self, msgs: list[Message]) -> None:
        producer = self.app.producer
        pending: list[Any] = []
        for topic, key, value, headers in msgs:
            pending.append(await producer.send(topic, key, value, None, None, headers))
        await asyncio.gather(*pending)  # every record acked (acks=all) before the event is

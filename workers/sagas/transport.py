"""faust's aiokafka transport with two fixes for reading transactional topics under at_least_once:
read_committed, and offsets that keep up across transaction markers.

faust-streaming 0.15.3 has no setting for the consumer's isolation level: its aiokafka driver
(`AIOKafkaConsumerThread._create_worker_consumer`) builds the AIOKafkaConsumer with
`isolation_level="read_committed"` only when the app runs exactly_once (`consumer.in_transaction`),
and `read_uncommitted` otherwise. The relay writes the event topics in Kafka transactions, so an
at_least_once reader would also see the records of aborted transactions (a relay killed mid-batch
leaves them, and its successor publishes the same events again).

The fix is the smallest subclass that changes nothing else: the worker consumer is built exactly
as faust builds it, then its isolation level is set before it starts (aiokafka hands the value to
its Fetcher in `start()`, which is where transaction markers are honoured). The transport is
registered under its own URL scheme (`veritas-kafka://`), faust's own plug-in mechanism for
transports (`faust.transport.drivers.TRANSPORTS`).

Offsets: every relay transaction ends with a commit marker, an offset no consumer ever receives.
faust records such a gap (`Consumer._add_gap(tp, last + 1, offset)`) as an interval that also
covers `offset`, the record just received; when the gap is folded into the acked offsets that
record's offset is in the list twice, and the duplicate ends faust's run of consecutive offsets
(`_new_offset`). Each commit then advanced past one transaction only: with the relay writing
several transactions per commit interval the committed offset fell behind without bound, and a
restart (even after a clean SIGTERM) redelivered everything since (measured: 140 events after a
SIGTERM; the same cause as robinhood/faust#625 and #559). SagaConsumer records the gap without the
received offset, and drops any duplicate before faust computes the run.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

SCHEME = "veritas-kafka"
ISOLATION_LEVEL = "read_committed"


class SagaConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it creates its Fetcher; validated there too.
        consumer._isolation_level = ISOLATION_LEVEL
        return consumer


class SagaConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return SagaConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # faust passes the received record's offset as offset_to and stores [from, to]: the gap
        # is [from, to - 1], the offsets between the last record and this one.
        await super()._add_gap(tp, offset_from, offset_to - 1)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return super()._new_offset(tp)


class Transport(driver.Transport):
    Consumer: ClassVar[Any] = SagaConsumer


def register() -> None:
    """Make `veritas-kafka://host:port` name this transport (idempotent)."""
    TRANSPORTS[SCHEME] = f"{__name__}:Transport"


def isolation_level(consumer: aiokafka.AIOKafkaConsumer) -> str:
    """The isolation level a consumer was given (for checks and tests)."""
    return str(consumer._isolation_level)

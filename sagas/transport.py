"""faust's aiokafka transport, reading read_committed under at_least_once.

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
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver

SCHEME = "veritas-kafka"
ISOLATION_LEVEL = "read_committed"


class ReadCommittedConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it creates its Fetcher; validated there too.
        consumer._isolation_level = ISOLATION_LEVEL
        return consumer


class ReadCommittedConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer: ClassVar[Any] = ReadCommittedConsumer


def register() -> None:
    """Make `veritas-kafka://host:port` name this transport (idempotent)."""
    TRANSPORTS[SCHEME] = f"{__name__}:Transport"


def isolation_level(consumer: aiokafka.AIOKafkaConsumer) -> str:
    """The isolation level a consumer was given (for checks and tests)."""
    return str(consumer._isolation_level)

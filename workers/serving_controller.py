"""The serving controller (`python -m workers.serving_controller`): it starts (or joins) Ray and
the Serve application, and keeps what is served equal to what the events say.

* It reads registry.events and serving.events from the start of the log into a `Plan`
  (sagas.serving_plan), then follows them: every change of production or canary is deployed with
  `serving.control` (a declarative `user_config` change: each replica loads, verifies and warms
  the new version beside the old one, then swaps one reference). No polling of the registry.
* It relays the replicas' reports (serving.reports) as serving commands: RecordLoadRefused
  (sha256_mismatch, bad_signature, not_approved, unreadable) and RecordServedVersion.
* While a canary is open it counts the canary's and the stable version's results on
  inference.results and sends RecordCanaryMeasurement once the rollout's minimum is reached (the
  deployment saga decides on it).
* Every `serving_scale_check_s` it reads the serving group's lag on inference.requests; past
  `serving_scale_out_lag` it adds a replica, up to `serving_max_replicas`, and records ScaledOut.

Command ids derive from their cause (a report of one deployment generation, a rollout's event
id), so a repeat is answered by the command handler's results table."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    Message,
    Producer,
    TopicPartition,
)
from prometheus_client import Counter, Gauge

from commands.catalog import topic_for
from config.settings import Settings
from events.envelope import EventEnvelope
from events.signatures import ChainGate
from infra import kafka, keys
from infra.anchors import Anchors
from infra.event_keys import PublishedKeys
from ml.store import ArtifactStore
from sagas.model import OutgoingCommand, command_id, envelope_bytes
from sagas.serving_plan import CanaryCount, Plan
from veritas.bootstrap import bootstrap
from workers.base import main, start_worker
from workers.sagas.principal import ServiceToken
from workers.serving_specs import report_command, scale_decision, user_config

log = logging.getLogger("veritas.serving")
NAME = "serving-controller"
EVENT_TOPICS = ("registry.events", "serving.events")
REPORTS, RESULTS, REQUESTS = "serving.reports", "inference.results", "inference.requests"
READY = Gauge("veritas_serving_ready", "1 once Serve runs what the events say")
REPLICAS = Gauge("veritas_serving_replicas", "Replicas the controller asks Serve for")
GENERATION = Gauge("veritas_serving_generation", "Deployments of user_config so far")
# Read by GET /deployments as the live counters.
RESULTS_SEEN = Counter(
    "veritas_served_results", "Results on inference.results", ["model", "version", "outcome"]
)
REFUSED = Counter(
    "veritas_serving_refused_events", "Events the serving controller did not believe", ["reason"]
)


class Controller:
    def __init__(self, settings: Settings) -> None:
        from serving import control

        self.s = settings
        self.control = control
        self.plan = Plan()
        public = PublishedKeys(settings)
        self.gate = ChainGate(public, Anchors(settings, public))
        self.store = ArtifactStore(settings.artifacts_dir)
        self.token = ServiceToken(settings, f"service:{NAME}", ["service"])
        self.producer = Producer(
            kafka.client_config(settings, principal="service", **{"enable.idempotence": True})
        )
        self.consumer = Consumer(
            kafka.client_config(
                settings,
                principal="service",
                **{
                    "group.id": f"veritas-{NAME}-{uuid4().hex[:8]}",  # assigned, never committed
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": False,
                },
            )
        )
        self.counts: dict[str, CanaryCount] = {}
        self.replicas = settings.serving_replicas
        self.generation = 0
        self.run_id = uuid4().hex[:12]  # a restarted controller's generations are new causes
        self.deployed: dict[str, Any] | None = None
        self.app: Any = None
        self.next_scale_check = 0.0

    # -- start-up -----------------------------------------------------------------------------

    def start(self) -> None:
        s = self.s
        facts = self.control.start_ray(
            self.control.RayOptions(
                num_cpus=s.ray_num_cpus,
                object_store_memory=s.ray_object_store_mb * 2**20,
                temp_dir=s.ray_temp_dir,
                token_path=str(s.var_dir / "ray" / "auth_token"),
                address=s.ray_address,
                allow_any_ray=s.ray_allow_any_version,
            )
        )
        log.info("ray started: %s", facts)
        ingress = {
            "bootstrap_servers": s.kafka_bootstrap_servers,
            # The replicas' credentials (service): Serve hands them to each replica's constructor.
            "client": kafka.security.sasl_config(s, "service"),
            "requests_topic": REQUESTS,
            "results_topic": RESULTS,
            "group_id": s.serving_group_id,
            "max_batch": s.serving_max_batch,
            "batch_wait_s": s.serving_batch_wait_s,
        }
        settings = self.control.settings_dict(
            ingress=ingress, report_topic=REPORTS, metrics_port=0, warm_rows=64
        )
        self.app = self.control.Serving(settings, self._scaling())
        self._assign()
        self._catch_up()
        self._deploy(force=True)
        READY.set(1)

    def _scaling(self) -> Any:
        REPLICAS.set(self.replicas)
        return self.control.Scaling(
            num_replicas=self.replicas, replica_cpus=self.s.serving_replica_cpus
        )

    def _assign(self) -> None:
        meta = self.consumer.list_topics(timeout=self.s.kafka_call_timeout_s)
        parts = []
        for topic in (*EVENT_TOPICS, REPORTS, RESULTS):
            start = OFFSET_BEGINNING if topic in EVENT_TOPICS else OFFSET_END
            parts += [TopicPartition(topic, p, start) for p in meta.topics[topic].partitions]
        self.consumer.assign(parts)

    def _catch_up(self) -> None:
        """Fold the event topics up to their end as of now, before the first deployment."""
        ends: dict[tuple[str, int], int] = {}
        for tp in self.consumer.assignment():
            if tp.topic in EVENT_TOPICS:
                _, high = self.consumer.get_watermark_offsets(tp, self.s.kafka_call_timeout_s)
                if high > 0:
                    ends[(tp.topic, tp.partition)] = high
        while ends:
            for m in self.consumer.consume(500, 0.5):
                self._handle(m)
                key = (m.topic() or "", m.partition() or 0)
                if key in ends and (m.offset() or 0) + 1 >= ends[key]:
                    del ends[key]
            for tp in self.consumer.position(
                [TopicPartition(t, p) for (t, p) in list(ends)]
            ):  # transaction markers end a partition without a record
                if tp.offset >= ends.get((tp.topic, tp.partition), 2**62):
                    del ends[(tp.topic, tp.partition)]

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stopped: Any) -> None:
        while not stopped():
            for m in self.consumer.consume(500, 0.2):
                self._handle(m)
            self._deploy()
            self._measure()
            self._maybe_scale()
            self.producer.poll(0)

    def _handle(self, m: Message) -> None:
        if m.error() is not None or m.value() is None:
            return
        topic = m.topic()
        try:
            if topic in EVENT_TOPICS:
                self._event(m.value() or b"")
            elif topic == REPORTS:
                self._report(orjson.loads(m.value() or b""))
            elif topic == RESULTS:
                self._count(orjson.loads(m.value() or b""))
        except Exception:  # one unusable record never stops serving
            log.exception("skipped a record of %s", topic)

    def _event(self, raw: bytes) -> None:
        """Only what verifies changes what is served (projections/believe.py's rule)."""
        doc, why = self.gate.admit(raw)
        if why is None:
            self.plan.apply(EventEnvelope.from_bytes(raw))
        elif why != "seen":
            REFUSED.labels(why).inc()
            log.warning("refused an event (%s): %s", why, doc and doc.get("aggregate_id"))

    def _deploy(self, force: bool = False) -> None:
        ring = keys.load(self.s)
        public = {k["key_id"]: k["public_key_pem"] for k in ring.published()}
        batch = {"max_size": 256, "wait_s": 0.002}
        config = user_config(self.plan.targets(), self.store, public, ring.key_id, batch)
        if not force and config == self.deployed:
            return
        self.generation += 1
        GENERATION.set(self.generation)
        log.info("deploying generation %d: %s", self.generation, _summary(config))
        self.app.deploy(config)
        self.deployed = config

    def _report(self, report: dict[str, Any]) -> None:
        got = report_command(report, f"{self.run_id}/{self.generation}")
        if got is not None:
            self._send(*got)

    def _count(self, result: dict[str, Any]) -> None:
        model = result.get("model_name")
        outcome = str(result.get("reason_code") or "ok")
        known = model in self.plan.production or model in self.plan.rollouts
        label = str(model) if known else "_unknown"  # bounded label values
        RESULTS_SEEN.labels(label, str(result.get("model_version")), outcome).inc()
        rollout = self.plan.rollouts.get(str(model))
        if rollout is None:
            return
        count = self.counts.get(str(model))
        if count is None or count.rollout is not rollout:
            count = self.counts[str(model)] = CanaryCount(str(model), rollout)
        count.add(result)

    def _measure(self) -> None:
        for model, count in list(self.counts.items()):
            if self.plan.rollouts.get(model) is not count.rollout:
                del self.counts[model]
                continue
            payload = count.measurement()
            if payload is not None:
                cause = f"measure/{count.rollout.started_event}"
                self._send(cause, OutgoingCommand("RecordCanaryMeasurement", payload, model))

    def _maybe_scale(self) -> None:
        now = time.monotonic()
        if now < self.next_scale_check:
            return
        self.next_scale_check = now + self.s.serving_scale_check_s
        lag = self._lag()
        to = scale_decision(
            lag, self.replicas, self.s.serving_scale_out_lag, self.s.serving_max_replicas
        )
        if to is None:
            return
        payload = {
            "from_replicas": self.replicas,
            "to_replicas": to,
            "lag": lag,
            "threshold": self.s.serving_scale_out_lag,
            "max_replicas": self.s.serving_max_replicas,
        }
        self.replicas = to
        self.app.scaling = self._scaling()
        self._deploy(force=True)
        self._send(f"scale/{uuid4()}", OutgoingCommand("RecordScaleOut", payload, "fleet"))

    def _lag(self) -> int:
        probe = Consumer(
            kafka.client_config(
                self.s, principal="service", **{"group.id": self.s.serving_group_id}
            )
        )
        try:
            meta = probe.list_topics(REQUESTS, timeout=self.s.kafka_call_timeout_s)
            parts = [TopicPartition(REQUESTS, p) for p in meta.topics[REQUESTS].partitions]
            lag = 0
            for tp in probe.committed(parts, timeout=self.s.kafka_call_timeout_s):
                low, high = probe.get_watermark_offsets(tp, self.s.kafka_call_timeout_s)
                lag += high - (tp.offset if tp.offset >= 0 else low)
            return lag
        except Exception:
            log.exception("reading the serving group's lag")
            return 0
        finally:
            probe.close()

    def _send(self, cause: str, cmd: OutgoingCommand) -> None:
        cid = command_id(NAME, cause, 0, cmd.type)
        value = envelope_bytes(cmd, cid, None, datetime.now(UTC))
        headers: list[tuple[str, str | bytes | None]] = [("authorization", self.token.header())]
        self.producer.produce(topic_for(cmd.type), value, cmd.key.encode(), headers=headers)
        self.producer.flush(self.s.kafka_call_timeout_s)
        log.info("sent %s (%s)", cmd.type, cause)

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(self.s.kafka_call_timeout_s)
        self.control.stop_ray()


def _summary(config: dict[str, Any]) -> dict[str, Any]:
    return {
        n: {s: (m[s] or {}).get("version") for s in ("production", "canary")}
        | {"share": m["canary_share"]}
        for n, m in config["models"].items()
    }


def run() -> None:
    container = bootstrap(Settings())
    stopper = start_worker(container, NAME)
    controller = Controller(container.settings)
    try:
        controller.start()
        log.info("serving: ready")
        controller.run(lambda: stopper.stopped)
    finally:
        controller.close()


if __name__ == "__main__":
    main(run)

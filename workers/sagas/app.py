"""The faust App of a Veritas process manager. Each setting and what it fixes (measured with
faust-streaming 0.15.3 and Kafka 4.1.2; see sagas/runtime.py for the whole design):

| setting | why |
|---|---|
| `processing_guarantee="at_least_once"` | exactly_once still gave 567-1,335 duplicates to a read_committed reader after a kill -9 (#517, #323); duplicates are made harmless by deterministic command ids instead |
| `veritas-kafka://` broker URLs | workers.sagas.transport: the consumer reads read_committed (faust has no setting for it outside exactly_once) |
| `store="memory://"` | no table is used (recovery is fragile, #651); the truth is the event store |
| `topic_allow_declare=False`, `topic_disable_leader=True` | the broker's auto-create is off; topics are code (`veritas init`), and no leader topic is needed |
| `consumer_group_instance_id` | static membership: a restarted worker gets its partitions back without waiting out the session |
| `broker_session_timeout` (saga_session_timeout_s, 10 s) | a worker that is gone for longer loses its partitions after 10 s, not 60 |
| `broker_commit_interval` (saga_commit_interval_s, 1 s) | bounds what a kill -9 redelivers (faust's default is 2.8 s) |
| `producer_acks=-1` | a command is on every in-sync replica before its event is acked |
| `consumer_auto_offset_reset="earliest"` | a new saga also reacts to the events published before its group existed |
| `web_enabled=False` | metrics come from prometheus_client on 127.0.0.1 (settings.saga_metrics_base) |
| `datadir` under `settings.var_dir/faust/` | nothing written in the working directory |
| `stream_wait_empty` (`wait_empty`) | off for a consumer that holds records unacked on purpose (the drift monitor's open windows): faust would wait for them at every stop and revocation, until the supervisor's SIGKILL |
| `broker_credentials` | the `service` principal's SASL credentials (infra/kafka/security.py) |

Agent concurrency (1, faust-streaming#606) is set where the agent is declared (sagas/runtime.py).
"""

from __future__ import annotations

import ssl

import faust

from config.settings import Settings
from infra.kafka import security
from workers.sagas import transport


def credentials(settings: Settings) -> faust.SASLCredentials | None:
    """The service principal's credentials for aiokafka (None: a cluster without authentication)."""
    if not security.enabled(settings):
        return None
    cred = security.credentials(settings, "service")
    context = None
    if settings.kafka_security_protocol == "SASL_SSL":
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location)
    return faust.SASLCredentials(
        username=cred.username,
        password=cred.password.get_secret_value(),
        mechanism=security.mechanism(settings, "service"),
        ssl_context=context,
    )


def make_app(
    settings: Settings, group_id: str, instance: int = 0, *, wait_empty: bool = True
) -> faust.App:
    """A faust App configured for Veritas (the module docstring says why each setting)."""
    transport.register()
    servers = [h.strip() for h in settings.kafka_bootstrap_servers.split(",") if h.strip()]
    session = settings.saga_session_timeout_s
    datadir = settings.var_dir / "faust" / group_id
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        group_id,  # the consumer group
        broker=[f"{transport.SCHEME}://{h}" for h in servers],
        broker_credentials=credentials(settings),
        processing_guarantee="at_least_once",
        store="memory://",
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_group_instance_id=f"{group_id}-{instance}",
        broker_session_timeout=session,
        broker_heartbeat_interval=max(0.5, session / 10),
        broker_rebalance_timeout=max(30.0, session),
        broker_commit_interval=settings.saga_commit_interval_s,
        consumer_auto_offset_reset="earliest",  # a new saga reacts to what came before it
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        autodiscover=False,
        datadir=str(datadir),
        stream_wait_empty=wait_empty,
    )

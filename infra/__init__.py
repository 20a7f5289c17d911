"""Adapters: every place the outside world is touched. `infra.kafka` (topics, clients, the
embedded broker), `infra.postgres` (the embedded server, the event store, the unit of work),
JWT (`infra.auth`), signing keys, supervisord, health probes, logging and fault classes."""

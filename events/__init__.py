"""Events and messages: the event payloads of each bounded context, the event envelope with its
per-aggregate hash chain, and the command result (everything the event store stores)."""

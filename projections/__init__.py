"""The read side: read-model tables, pure projections (event -> row operations) run by the live
and the bulk executor, plain query functions, replay with digests, and the audit's verifiers."""

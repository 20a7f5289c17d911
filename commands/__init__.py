"""The write side's service layer: command payloads per context, decoding at the door, the
explicit `handle(cmd, *, deps)` handlers, and the batch service that runs messages to outcomes."""

"""Entrypoints: thin worker loops (decode, call, record the position): the command handler, the
relay, the projector, and the faust runtime of the sagas."""

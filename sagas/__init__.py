"""Process managers: pure policies `policy(state, event) -> commands` (the training saga) and the
model the faust runtime (workers.sagas) runs them with."""

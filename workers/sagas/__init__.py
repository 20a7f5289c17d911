"""The saga runtime on faust-streaming: one worker process per process manager (sagas/)."""

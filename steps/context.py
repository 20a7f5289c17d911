"""What a step is given: settings, the event store (to read command results), the artifact store,
the signing keyring, read-model connections, a way to send commands, and a progress callback.
The worker builds it; the steps do not know Kafka or the composition root."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg

from config.settings import Settings
from events.results import CommandResult
from infra import keys
from infra.postgres.eventstore import EventStore
from ml.store import ArtifactStore

Send = Callable[[str, dict[str, Any], str, str], None]  # (type, payload, key, command_id)


class PermanentFailure(Exception):
    """The step cannot succeed by trying again (bad data, a failed gate, a refusal)."""

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = detail or {}


class TransientFailure(Exception):
    """The step may succeed on another attempt (a dependency away, a race)."""


@dataclass
class StepContext:
    settings: Settings
    store: EventStore
    send: Send
    read_connection: Callable[[], psycopg.Connection]
    progress: Callable[[dict[str, Any]], None] = lambda _: None
    deadline: float = field(default_factory=lambda: time.monotonic() + 600)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifacts_dir)

    @cached_property
    def keyring(self) -> keys.Keyring:
        return keys.load(self.settings)

    def snapshot_dir(self, saga_id: str) -> Path:
        return self.settings.var_dir / "snapshots" / saga_id

    def work_dir(self, saga_id: str, step: str, attempt: int) -> Path:
        path = self.settings.var_dir / "work" / saga_id / step / str(attempt)
        shutil.rmtree(path, ignore_errors=True)  # a re-run of the attempt starts clean
        path.mkdir(parents=True)
        return path

    def seconds_left(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def wait_result(self, command_id: str, timeout_s: float = 60.0) -> CommandResult:
        """The stored result of a command this step sent (the handler writes it with the events)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            found = self.store.find_results([command_id]).get(command_id)
            if found is not None:
                return found
            time.sleep(0.1)
        raise TransientFailure(f"no result for command {command_id} within {timeout_s:.0f}s")

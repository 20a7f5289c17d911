"""The in-memory index of due timers: a heap over what the aggregates' states say is due. It is
never the truth (the events are): it is rebuilt from the store at start, and each aggregate's
entries are replaced whenever the runtime has loaded that aggregate's state.

Entries are removed lazily: a heap entry is live only while its aggregate's current timers still
hold it. A timer that fired stays in `fired` while the state still lists it, so the same firing is
not repeated within one process; after a restart the rebuilt heap fires it again, with the same
command ids (the command handler dedupes them).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sagas.model import Timer

_Entry = tuple[datetime, int, UUID, Timer]


class TimerBook:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._live: dict[UUID, set[Timer]] = {}
        self._versions: dict[UUID, int] = {}
        self._fired: dict[UUID, set[Timer]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._live.values())

    def replace(self, aggregate_id: UUID, version: int, timers: Iterable[Timer]) -> bool:
        """Set an aggregate's open timers as of its `version`. A state older than one already
        seen is ignored (returns False): the start-up rebuild may race the live agent."""
        if version < self._versions.get(aggregate_id, 0):
            return False
        self._versions[aggregate_id] = version
        wanted = set(timers)
        if any(t.due_at.tzinfo is None for t in wanted):
            raise ValueError("timer due times must be timezone-aware")
        fired = self._fired.get(aggregate_id, set()) & wanted
        if fired:
            self._fired[aggregate_id] = fired
        else:
            self._fired.pop(aggregate_id, None)
        live = wanted - fired
        old = self._live.get(aggregate_id, set())
        for t in live - old:
            heapq.heappush(self._heap, (t.due_at, next(self._seq), aggregate_id, t))
        if live:
            self._live[aggregate_id] = live
        else:
            self._live.pop(aggregate_id, None)
        return True

    def next_due(self) -> datetime | None:
        self._drop_dead()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[tuple[UUID, Timer]]:
        """Every live timer due at `now` or earlier, earliest first, marked as fired."""
        out: list[tuple[UUID, Timer]] = []
        while True:
            self._drop_dead()
            if not self._heap or self._heap[0][0] > now:
                return out
            _, _, agg, timer = heapq.heappop(self._heap)
            self._live[agg].discard(timer)
            if not self._live[agg]:
                del self._live[agg]
            self._fired.setdefault(agg, set()).add(timer)
            out.append((agg, timer))

    def retry(self, aggregate_id: UUID, timer: Timer) -> None:
        """Put back a timer whose firing failed (it fires again on the next pass)."""
        fired = self._fired.get(aggregate_id, set())
        fired.discard(timer)
        if not fired:
            self._fired.pop(aggregate_id, None)
        live = self._live.setdefault(aggregate_id, set())
        if timer not in live:
            live.add(timer)
            heapq.heappush(self._heap, (timer.due_at, next(self._seq), aggregate_id, timer))

    def _drop_dead(self) -> None:
        while self._heap:
            _, _, agg, timer = self._heap[0]
            if timer in self._live.get(agg, ()):
                return
            heapq.heappop(self._heap)

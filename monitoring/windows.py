"""Windows per (model, version): window n is the n-th block of `window_size` rows of that version
in the order the monitor joins them (or fewer, at least `window_min_rows`, once the oldest is
`window_max_age_s` old). Ids are contiguous and come from the event store (the last recorded
window + 1), and a row whose result position a recorded window already holds is never counted
again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from monitoring.joining import Pos, Row


@dataclass
class VersionWindows:
    model_name: str
    version: str
    last_id: int  # the last window recorded in the event store
    counted: set[Pos] = field(default_factory=set)  # result positions of recorded windows
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> bool:
        """False for a row a recorded window already holds (read again after a restart)."""
        if row.result_pos in self.counted:
            return False
        self.rows.append(row)
        return True

    def due(self, policy: dict[str, Any], now: float) -> list[Row] | None:
        size = int(policy["window_size"])
        if len(self.rows) >= size:
            return self.rows[:size]
        age = policy.get("window_max_age_s")
        if (
            age
            and len(self.rows) >= int(policy["window_min_rows"])
            and now - self.rows[0].at >= float(age)
        ):
            return list(self.rows)
        return None

    def recorded(self, window_id: int, positions: set[Pos]) -> list[Row]:
        """Window `window_id` is in the store holding `positions`: its rows leave the open
        window (and any row it does not hold stays, in order); returns the rows it took."""
        self.last_id = max(self.last_id, window_id)
        self.counted |= positions
        taken = [r for r in self.rows if r.result_pos in positions]
        self.rows = [r for r in self.rows if r.result_pos not in positions]
        return taken


def positions_doc(rows: list[Row]) -> dict[str, list[int]]:
    """Result positions as `{"topic/partition": [offsets]}` (kept in the window's bounds)."""
    doc: dict[str, list[int]] = {}
    for r in rows:
        doc.setdefault(f"{r.result_pos[0]}/{r.result_pos[1]}", []).append(r.result_pos[2])
    return {k: sorted(v) for k, v in doc.items()}


def positions_of(doc: dict[str, list[int]]) -> set[Pos]:
    out: set[Pos] = set()
    for tp, offsets in doc.items():
        topic, _, part = tp.rpartition("/")
        out |= {(topic, int(part), int(o)) for o in offsets}
    return out


def bounds(rows: list[Row]) -> dict[str, Any]:
    return {
        "rows": len(rows),
        "first_request_id": rows[0].request_id,
        "last_request_id": rows[-1].request_id,
        "positions": positions_doc(rows),
    }


def frame(rows: list[Row], feature_names: list[str]) -> pd.DataFrame:
    """The window's inputs as the reference's columns (a list in feature order, or a map)."""
    data = [
        [r.features.get(n) for n in feature_names] if isinstance(r.features, dict) else r.features
        for r in rows
    ]
    return pd.DataFrame(data, columns=feature_names, dtype=float)

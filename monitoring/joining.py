"""Joining inference.requests (features) to inference.results (version) by request_id.

A record is *pending* until the window it went into is recorded (or it is dropped: an error
result, a record that never finds its partner within the join timeout, a malformed one). The
acknowledger releases a partition's records in offset order only, so the consumer's committed
offset never passes a record whose window is not in the event store: after a kill -9 everything
not yet counted is read again, and rows already counted are recognised by their result's
position (kept in each DriftChecked's bounds) and skipped.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

Pos = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class Row:
    """One served input: its features, the version that answered and where both were read."""

    request_id: str
    model_name: str
    version: str
    features: list[Any] | dict[str, Any]
    prediction: Any
    request_pos: Pos
    result_pos: Pos
    at: float  # monotonic time it was joined


@dataclass
class _Half:
    pos: Pos
    body: dict[str, Any]
    at: float


@dataclass
class Joiner:
    timeout_s: float = 120.0
    requests: OrderedDict[str, _Half] = field(default_factory=OrderedDict)
    results: OrderedDict[str, _Half] = field(default_factory=OrderedDict)

    def add(self, topic: str, pos: Pos, raw: bytes | None, now: float) -> Row | bool | None:
        """A row when `raw` completes a pair; True when it waits for its partner; False when it
        is dropped at once (malformed, an error result)."""
        body = _parse(raw)
        if body is None or not isinstance(body.get("request_id"), str):
            return False
        rid = body["request_id"]
        if topic == "inference.requests":
            if not isinstance(body.get("features"), list | dict):
                return False
            other = self.results.pop(rid, None)
            if other is None:
                self.requests[rid] = _Half(pos, body, now)
                return True
            return _row(_Half(pos, body, now), other, now)
        if "error" in body or not isinstance(body.get("model_version"), str):
            return False
        other = self.requests.pop(rid, None)
        if other is None:
            self.results[rid] = _Half(pos, body, now)
            return True
        return _row(other, _Half(pos, body, now), now)

    def expire(self, now: float) -> list[Pos]:
        """Halves that waited past the timeout: dropped, their positions released."""
        out: list[Pos] = []
        for book in (self.requests, self.results):
            while book:
                rid, half = next(iter(book.items()))
                if now - half.at < self.timeout_s:
                    break
                del book[rid]
                out.append(half.pos)
        return out


def _parse(raw: bytes | None) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _row(req: _Half, res: _Half, now: float) -> Row:
    return Row(
        request_id=str(req.body["request_id"]),
        model_name=str(res.body.get("model_name") or req.body.get("model_name")),
        version=str(res.body["model_version"]),
        features=req.body["features"],
        prediction=res.body.get("prediction"),
        request_pos=req.pos,
        result_pos=res.pos,
        at=now,
    )


@dataclass
class Acknowledger:
    """Releases each partition's records in offset order, once every earlier one is done."""

    pending: dict[tuple[str, int], deque[tuple[int, Any]]] = field(default_factory=dict)
    done: set[Pos] = field(default_factory=set)

    def track(self, pos: Pos, handle: Any) -> None:
        self.pending.setdefault(pos[:2], deque()).append((pos[2], handle))

    def finish(self, positions: list[Pos]) -> list[Any]:
        """Mark positions done; the handles now releasable, in order per partition."""
        self.done.update(positions)
        out: list[Any] = []
        for tp in {p[:2] for p in positions}:
            queue = self.pending.get(tp)
            while queue and (tp[0], tp[1], queue[0][0]) in self.done:
                offset, handle = queue.popleft()
                self.done.discard((tp[0], tp[1], offset))
                out.append(handle)
        return out

    def __len__(self) -> int:
        return sum(len(q) for q in self.pending.values())

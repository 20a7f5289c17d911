"""Hypothesis strategies shared by the door's fuzz tests and the write-read property tests:
commands the decoder must accept (unicode, big numbers within limits, deep-but-allowed free
dicts), and mutations of them that it must refuse without ever raising."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from commands.catalog import COMMAND_TOPICS, COMMAND_TYPES, topic_for
from commands.service import Incoming
from tests.unit.harness import SETTINGS, Harness

LIMIT = SETTINGS.command_max_depth
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
NONBLANK = st.builds(lambda s: "x" + s, TEXT)
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e16, 1.5e300, -0.0, 5e-324, 1.7976931348623157e308, 1e15, 1e-7, 0.1]
)
INTS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([2**63 - 1, -(2**63), 0, 2**53 + 1])
SCALARS = st.none() | st.booleans() | INTS | FLOATS | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=15,
)
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
SEMVERS = st.tuples(*[st.integers(0, 999)] * 3).map(lambda t: ".".join(map(str, t)))


def _chain(depth: int, leaf: Any, as_list: bool) -> Any:
    for _ in range(depth):
        leaf = [leaf] if as_list else {"k": leaf}
    return leaf


def deep_values(room: int) -> st.SearchStrategy[Any]:
    """A value nested up to `room` levels (its own container included)."""
    return st.builds(_chain, st.integers(0, room), SCALARS, st.booleans())


# training_config sits at level 4 (envelope, payload, lineage): its values may use the rest.
FREE_DICT = st.dictionaries(TEXT, JSON | deep_values(LIMIT - 4), max_size=5)
TAGS = st.dictionaries(TEXT, TEXT, max_size=5)
METRICS = st.dictionaries(TEXT, FLOATS | st.integers(-(2**63), 2**63 - 1), max_size=5)


@dataclass(frozen=True)
class Step:
    user: str
    ctype: str
    payload: dict[str, Any]
    correlation_id: str | None
    ascii_only: bool  # json.dumps' default: non-ASCII as \\u escapes (surrogate pairs for emoji)


def message(h: Harness, step: Step, command_id: str | None = None) -> Incoming:
    doc: dict[str, Any] = {
        "command_id": command_id or f"cmd-{uuid.uuid4()}",
        "type": step.ctype,
        "schema_version": COMMAND_TYPES[step.ctype].schema_version,
        "issued_at": h.now.isoformat(),
        "payload": step.payload,
    }
    if step.correlation_id is not None:
        doc["correlation_id"] = step.correlation_id
    raw = json.dumps(doc, ensure_ascii=step.ascii_only).encode()
    return Incoming(raw, f"Bearer {h.token(step.user)}", topic_for(step.ctype))


def _steps(draw: st.DrawFn) -> list[Step]:
    def step(user: str, ctype: str, payload: dict[str, Any]) -> Step:
        corr = draw(st.none() | TEXT)
        return Step(user, ctype, payload, corr, draw(st.booleans()))

    name = draw(NAMES)
    out = [
        step(
            "alice",
            "RegisterModel",
            {
                "name": name,
                "description": draw(NONBLANK),
                "intended_use": draw(NONBLANK),
                "limitations": draw(NONBLANK),
                "tags": draw(TAGS),
            },
        )
    ]
    versions = draw(st.lists(SEMVERS, min_size=1, max_size=3, unique=True))
    for i, v in enumerate(versions):
        lineage: dict[str, Any] = {
            "training_config": draw(FREE_DICT),
            "environment": draw(FREE_DICT),
            "code_revision": draw(st.none() | TEXT),
        }
        if i:
            lineage["parent_version"] = versions[i - 1]
        artifact = {"uri": "s3://m/" + draw(NONBLANK), "sha256": "ab" * 32, "signature": draw(TEXT)}
        payload = {"model_name": name, "version": v, "artifact": artifact, "lineage": lineage}
        out.append(step("alice", "RegisterModelVersion", {**payload, "metrics": draw(METRICS)}))
    update = {"name": name, "tags": draw(TAGS), "description": draw(st.none() | NONBLANK)}
    out.append(step("alice", "UpdateModelMetadata", update))
    for v in versions:
        ask = {
            "model_name": name,
            "version": v,
            "target_stage": "staging",
            "justification": draw(NONBLANK),
        }
        out.append(step("alice", "SubmitForApproval", ask))
        out.append(
            step("erin", "TransitionStage", {"model_name": name, "version": v, "stage": "staging"})
        )
    return out


histories = st.composite(_steps)


# --- mutations the door must refuse (or accept) without raising ----------------------------------

NASTY_TEXT = [
    '"\\u0000"',
    '"\\ud800"',
    '"\\udfff x"',
    '"a\\u0000b"',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1" * 30,
    "9" * 5000,
    "18446744073709551616",
    '"2"',
    "2.0",
    "true",
    "null",
    "[]",
    "{}",
    '"9999-12-31T23:59:59Z"',
    '"0001-01-01T00:00:00Z"',
    '"2026-12-02T12:00:00"',
    "1764676740",
    "[" * 1000 + "]" * 1000,
    "[" * 70 + "]" * 70,
    '{"a":' * 300 + "1" + "}" * 300,
    '"' + "x" * 150_000 + '"',
    '{"k": 1, "k": 2}',
]
ENVELOPE_KEYS = ["command_id", "type", "schema_version", "issued_at", "correlation_id", "payload"]


@st.composite
def mutated(draw: st.DrawFn, h: Harness, step: Step) -> Incoming:
    """`step`'s message with one or two mutations, at the JSON text or at the byte level."""
    m = message(h, step)
    raw = m.value or b""
    topic: str | None = m.topic
    auth: str | None = m.authorization
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(
            st.sampled_from(["value", "envelope", "dup", "topic", "auth", "bytes", "bom", "cut"])
        )
        if kind == "value":  # replace one payload value's JSON text with a nasty one
            doc = json.loads(raw) if _loads(raw) else None
            if isinstance(doc, dict) and isinstance(doc.get("payload"), dict) and doc["payload"]:
                key = draw(st.sampled_from(sorted(doc["payload"])))
                doc["payload"][key] = "<<nasty>>"
                raw = (
                    json.dumps(doc)
                    .encode()
                    .replace(b'"<<nasty>>"', draw(st.sampled_from(NASTY_TEXT)).encode())
                )
        elif kind == "envelope":
            doc = json.loads(raw) if _loads(raw) else None
            if isinstance(doc, dict):
                doc[draw(st.sampled_from(ENVELOPE_KEYS))] = "<<nasty>>"
                raw = (
                    json.dumps(doc)
                    .encode()
                    .replace(b'"<<nasty>>"', draw(st.sampled_from(NASTY_TEXT)).encode())
                )
        elif kind == "dup":
            key = draw(st.sampled_from(ENVELOPE_KEYS[:4])).encode()
            raw = raw.replace(b'"' + key + b'"', b'"' + key + b'": 1, "' + key + b'"', 1)
        elif kind == "topic":
            topic = draw(st.sampled_from([*COMMAND_TOPICS.values(), "commands.dlq", "", None]))
        elif kind == "auth":
            auth = draw(
                st.sampled_from([None, "", "Bearer", "Bearer x.y.z", "Basic abc", auth or ""])
            )
        elif kind == "bytes" and raw:
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
        elif kind == "bom":
            raw = b"\xef\xbb\xbf" + raw
        elif kind == "cut":
            raw = raw[: draw(st.integers(0, len(raw)))]
    return Incoming(raw, auth, topic)


def _loads(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True

"""Untrusted command bytes to plain JSON values, and the first value in them that some reader of
the events could not keep.

The json module parses (never orjson: it turns integers beyond 64 bits into floats). Its hooks
put an `Invalid` in place of NaN, Infinity, an overflowing float (1e400) or an integer beyond
64 bits, and mark an object with duplicate keys, instead of failing the whole parse, so the
envelope's command_id can still be read and the sender told which field is wrong. One iterative
walk then finds the first of those, a nesting deeper than allowed, or a NUL or lone surrogate in a
string or key (Postgres text and jsonb cannot hold either; both can only arrive as \\u escapes).

The walk costs a few microseconds, so it runs only when it may find something: a hook met a
refused value, the bytes hold more brackets than the depth allowed, or a \\u0000 or \\uD8xx-DFxx
escape.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

_INT64 = (-(2**63), 2**63 - 1)
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_hooks = threading.local()  # .flagged: a hook met a refused value during this thread's parse


class Invalid:
    """Stands in for a JSON value that parses but that Veritas refuses; `why` says why."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why
        _hooks.flagged = True


class DupKeys(dict[str, Any]):
    """An object that named some key more than once (the last value of each is kept)."""

    dups: list[str]


def _pairs(pairs: list[tuple[str, Any]], _dict: type[dict[str, Any]] = dict) -> dict[str, Any]:
    d = _dict(pairs)  # called for every object: the builtins are bound once, as defaults
    if len(d) == len(pairs):
        return d
    _hooks.flagged = True
    marked = DupKeys(d)
    marked.dups = [k for k, n in Counter(k for k, _ in pairs).items() if n > 1]
    return marked


def _constant(name: str) -> Invalid:
    return Invalid(f"{name} is not a finite number")


def _float(text: str) -> float | Invalid:
    value = float(text)
    if value - value == 0.0:  # false for inf and nan
        return value
    return Invalid(f"{text[:40]} is beyond the range of a 64-bit float")


def _int(text: str) -> int | Invalid:
    if len(text) < 19:  # fast path: at most 18 digits always fits
        return int(text)
    value = int(text) if len(text) <= 20 else None
    if value is not None and _INT64[0] <= value <= _INT64[1]:
        return value
    return Invalid(f"{text[:40]} is beyond the range of a 64-bit integer")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_float=_float, parse_int=_int, parse_constant=_constant
)


class Unparsable(Exception):
    """The bytes are not UTF-8 JSON at all (or nest too deep for the parser)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Parsed(NamedTuple):  # a tuple: built once per command, cheaper than a frozen dataclass
    doc: Any
    raw: bytes
    flagged: bool  # holds an Invalid or a DupKeys somewhere


def parse(raw: bytes) -> Parsed:
    """Parse `raw`, or raise Unparsable. UTF-8 only: a BOM, UTF-16 or Latin-1 are refused."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unparsable("invalid_json", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    _hooks.flagged = False
    try:
        return Parsed(_DECODER.decode(text), raw, _hooks.flagged)
    except RecursionError:
        raise Unparsable("too_deep", "nested too deep for the JSON parser") from None
    except ValueError as exc:
        raise Unparsable("invalid_json", f"not JSON: {exc}") from None


@dataclass(frozen=True)
class Violation:
    reason: str  # a reason code: schema_violation or too_deep
    path: tuple[str | int, ...]
    why: str

    @property
    def message(self) -> str:
        return f"{render_path(self.path)}: {self.why}"


def render_path(path: tuple[str | int, ...]) -> str:
    """`payload.metrics.auc`, `payload.lineage.training_config.layers[2]`; `<root>` for none."""
    out = ""
    for part in path[:12]:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part[:64]!a}]"
    return (out + (".…" if len(path) > 12 else "")) or "<root>"


def first_violation(parsed: Parsed, max_depth: int) -> Violation | None:
    """The first value of a parsed object that Veritas refuses, if any."""
    raw = parsed.raw
    check_text = b"\\u" in raw and _SUSPECT_ESCAPE.search(raw) is not None
    if parsed.flagged or check_text or raw.count(b"{") + raw.count(b"[") > max_depth:
        return walk(parsed.doc, max_depth=max_depth, check_text=check_text)
    return None


def walk(doc: Any, *, max_depth: int, check_text: bool) -> Violation | None:
    """The first refused value in `doc`, a dict or list. `check_text`: look for NUL and lone
    surrogates in strings and keys too."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(doc, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            return Violation("too_deep", path, f"nested deeper than {max_depth} levels")
        if type(node) is DupKeys:
            return Violation("schema_violation", path, f"duplicate key {node.dups[0]!a}")
        for key, value in node.items() if type(node) is dict else enumerate(node):
            t = type(value)
            if t is dict or t is list or t is DupKeys:
                stack.append((value, depth + 1, (*path, key)))
            elif t is Invalid:
                return Violation("schema_violation", (*path, key), value.why)
            elif check_text and t is str and _BAD_CHAR.search(value):
                return Violation("schema_violation", (*path, key), _bad_text(value))
            if check_text and type(key) is str and _BAD_CHAR.search(key):
                return Violation("schema_violation", path, f"key {key[:64]!a}: {_bad_text(key)}")
    return None


def _bad_text(text: str) -> str:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which Postgres cannot store"
    return "contains a lone UTF-16 surrogate, which has no UTF-8 encoding"

"""GET /quarantine's cursor names a place (topic, partition, offset); anything else is a 422."""

from __future__ import annotations

import pytest

from projections.quarantine_queries import parse_place


def test_a_quarantine_cursor_is_a_place_or_refused() -> None:
    assert parse_place("registry.events|2|41") == ("registry.events", 2, 41)
    assert parse_place("a|b|1|2") == ("a|b", 1, 2)
    for bad in ("", "x", "t|1", "t|x|1", "|1|2", "t|1|-2", f"t|1|{2**63}", f"t|{2**31}|1"):
        with pytest.raises(ValueError, match="invalid cursor"):
            parse_place(bad)

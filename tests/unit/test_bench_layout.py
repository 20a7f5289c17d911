"""bench/ stays readable: a shared stack module plus one small script or module per measurement, no
file over about 400 lines (issue 11)."""

from __future__ import annotations

from config.settings import ROOT

MAX_LINES = 400


def test_no_bench_file_is_over_the_limit() -> None:
    files = sorted((ROOT / "bench").glob("*.py"))
    assert len(files) > 5  # the walk sees the benchmarks
    long = {f.name: n for f in files if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these bench files (over {MAX_LINES} lines): {long}"

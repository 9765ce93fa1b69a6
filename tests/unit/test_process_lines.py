"""Tests for corral.supervisor.process.lines (LineSplitter)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.supervisor.process import LineSplitter

pytestmark = pytest.mark.timeout(30)


# ----------------------------------------------------------------- splitter


def expected_lines(raw: bytes, cap: int) -> list[bytes]:
    parts = raw.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    out = []
    for part in parts:
        if part.endswith(b"\r"):
            part = part[:-1]
        out.append(part[:cap])
    return out


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    crs=st.lists(st.booleans(), min_size=12, max_size=12),
    trailing_nl=st.booleans(),
    cap=st.integers(min_value=1, max_value=30),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=10),
)
def test_line_splitter_matches_model(
    lines: list[bytes], crs: list[bool], trailing_nl: bool, cap: int, cuts: list[int]
) -> None:
    raw = b"\n".join(line + (b"\r" if cr else b"") for line, cr in zip(lines, crs, strict=False))
    if lines and trailing_nl:
        raw += b"\n"
    splitter = LineSplitter(cap)
    got: list[bytes] = []
    prev = 0
    for cut in [*sorted({min(c, len(raw)) for c in cuts}), len(raw)]:
        got += splitter.feed(raw[prev:cut])
        prev = cut
    last = splitter.finish()
    if last is not None:
        got.append(last)
    assert got == expected_lines(raw, cap)
    assert all(len(line) <= cap for line in got)


def test_line_splitter_counts_truncation() -> None:
    s = LineSplitter(4)
    assert s.feed(b"abcdefgh") == [b"abcd"]
    assert s.feed(b"ijk\nxy\r\n") == [b"xy"]
    assert s.truncated_lines == 1
    assert s.discarded_bytes == 7
    assert s.finish() is None

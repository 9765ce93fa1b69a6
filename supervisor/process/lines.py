"""Splitting a byte stream into bounded lines (a provider's stdout).

Owns the over-long line rule: a stdout line longer than ``max_line_bytes`` is
dropped whole and replaced, where it stood, by a :class:`DroppedLine` marker
giving its size.  The marker is a separate type, never bytes, so it cannot be
mistaken for (or parsed as) provider output.  While the rest of such a line
is read it is only counted, never kept: memory use is bounded by
``max_line_bytes`` plus the chunk being fed, however long the line.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DroppedLine", "LineSplitter", "line_runs"]

_CR = 0x0D


@dataclass(frozen=True, slots=True)
class DroppedLine:
    """An output line that was longer than the limit and was dropped."""

    size: int  # its length in bytes, without the newline and one trailing "\r"
    limit: int  # the per-line limit it exceeded


def line_runs(found: list[bytes | DroppedLine]) -> list[list[bytes] | DroppedLine]:
    """``found`` in order, each run of consecutive lines as one list."""
    out: list[list[bytes] | DroppedLine] = []
    for item in found:
        if isinstance(item, DroppedLine):
            out.append(item)
        elif out and isinstance(out[-1], list):
            out[-1].append(item)
        else:
            out.append([item])
    return out


class LineSplitter:
    """Split a byte stream into lines of at most ``max_line_bytes`` bytes.

    Lines are returned without the ``\\n`` and without one trailing ``\\r``.
    A longer line is returned as a :class:`DroppedLine` once it has ended (at
    its newline, or at the end of the stream); none of its bytes are.
    """

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be >= 1")
        self._max = max_line_bytes
        self._buf = bytearray()
        self._discarding = False
        self._skipped = 0  # bytes of the line being dropped, so far
        self._skipped_cr = False  # its last byte so far is "\r"
        self.dropped_lines = 0
        self.dropped_bytes = 0

    @property
    def max_line_bytes(self) -> int:
        """The per-line cap."""
        return self._max

    def feed(self, data: bytes) -> list[bytes | DroppedLine]:
        """Consume ``data``; return the lines it completed, in order."""
        out: list[bytes | DroppedLine] = []
        limit = self._max + 1  # room for a trailing "\r" that gets stripped
        start = 0
        n = len(data)
        while start < n:
            nl = data.find(b"\n", start)
            end = n if nl == -1 else nl
            if self._discarding:
                self._skip(data, start, end)
            elif not self._buf and nl != -1 and end - start <= limit:
                # Fast path: a whole line inside this chunk.
                out.append(self._finish_line(data[start:end]))
                start = nl + 1
                continue
            else:
                take = min(limit - len(self._buf), end - start)
                self._buf += data[start : start + take]
                if take < end - start:
                    # Over the limit: from here on the line is only counted.
                    self._discarding = True
                    self._skipped = len(self._buf)
                    self._buf.clear()
                    self._skip(data, start + take, end)
            if nl == -1:
                break
            if self._discarding:
                out.append(self._end_dropped())
            else:
                out.append(self._finish_line(bytes(self._buf)))
                self._buf.clear()
            start = nl + 1
        return out

    def finish(self) -> bytes | DroppedLine | None:
        """End of stream: the last line if it had no newline, else ``None``."""
        if self._discarding:
            return self._end_dropped()
        if not self._buf:
            return None
        line = self._finish_line(bytes(self._buf))
        self._buf.clear()
        return line

    def _skip(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._skipped += end - start
            self._skipped_cr = data[end - 1] == _CR

    def _end_dropped(self) -> DroppedLine:
        size = self._skipped - (1 if self._skipped_cr else 0)
        self._discarding = False
        self._skipped = 0
        self._skipped_cr = False
        return self._dropped(size)

    def _dropped(self, size: int) -> DroppedLine:
        self.dropped_lines += 1
        self.dropped_bytes += size
        return DroppedLine(size, self._max)

    def _finish_line(self, line: bytes) -> bytes | DroppedLine:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self._max:
            return self._dropped(len(line))
        return line

"""Splitting a byte stream into bounded lines (a provider's stdout).

Owns the over-long line rule: a stdout line longer than ``max_line_bytes`` is
delivered as its first ``max_line_bytes`` bytes as soon as the limit is
crossed; the rest of that line is read and discarded.  No in-band marker is
injected (it could be mistaken for provider output); the cut line is
normally not valid JSON, so parsers see it as unparseable.  Memory use is
bounded by ``max_line_bytes`` plus the chunk being fed.
"""

from __future__ import annotations

__all__ = ["LineSplitter"]


class LineSplitter:
    """Split a byte stream into lines of at most ``max_line_bytes`` bytes.

    Lines are returned without the ``\\n`` and without one trailing ``\\r``.
    Memory use is bounded by ``max_line_bytes`` (plus the chunk being fed).
    A longer line yields its first ``max_line_bytes`` bytes once, immediately;
    the rest of it is dropped.
    """

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be >= 1")
        self._max = max_line_bytes
        self._buf = bytearray()
        self._discarding = False
        self.truncated_lines = 0
        self.discarded_bytes = 0

    @property
    def max_line_bytes(self) -> int:
        """The per-line cap."""
        return self._max

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the lines it completed (or cut)."""
        out: list[bytes] = []
        limit = self._max + 1  # room for a trailing "\r" that gets stripped
        start = 0
        n = len(data)
        while start < n:
            nl = data.find(b"\n", start)
            end = n if nl == -1 else nl
            if self._discarding:
                self.discarded_bytes += end - start
            elif not self._buf and nl != -1 and end - start <= limit:
                # Fast path: a whole line inside this chunk.
                out.append(self._finish_line(data[start:end]))
                start = nl + 1
                continue
            else:
                take = min(limit - len(self._buf), end - start)
                self._buf += data[start : start + take]
                if take < end - start:
                    out.append(bytes(self._buf[: self._max]))
                    self.discarded_bytes += len(self._buf) - self._max + (end - start - take)
                    self.truncated_lines += 1
                    self._buf.clear()
                    self._discarding = True
            if nl == -1:
                break
            if self._discarding:
                self._discarding = False
            else:
                out.append(self._finish_line(bytes(self._buf)))
                self._buf.clear()
            start = nl + 1
        return out

    def finish(self) -> bytes | None:
        """End of stream: the last line if it had no newline, else ``None``."""
        if self._discarding:
            self._discarding = False
            return None
        if not self._buf:
            return None
        line = self._finish_line(bytes(self._buf))
        self._buf.clear()
        return line

    def _finish_line(self, line: bytes) -> bytes:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self._max:
            self.discarded_bytes += len(line) - self._max
            self.truncated_lines += 1
            line = line[: self._max]
        return line

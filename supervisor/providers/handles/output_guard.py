"""What a provider process may print that corral does not understand, and how much.

One :class:`OutputGuard` per provider process sits between its dialect's parser
and the session. It owns three rules:

* **Unknown items are capped.** The first :data:`MAX_UNKNOWN_KEPT` ``unknown``
  items of a process (stored raw by the session) are kept; later ones are
  dropped and counted. :meth:`OutputGuard.summary` turns the count into one
  ``unknown`` item ``{"type": "corral.dropped", "count": n, "limit": ...}``
  (stored like the others), at each turn end and when the process ends.
* **Over-long lines become a note.** A line dropped by the line splitter
  becomes one displayed ``system`` item saying how long it was; after
  :data:`MAX_DROPPED_NOTES` of them, further drops are only counted.
* **Garbage ends the process.** A *garbage* line is one that is not a JSON
  object and yields nothing the dialect recognises (plain text, invalid
  UTF-8, JSON that is not an object, an over-long line). A JSON object of an
  unknown shape is not garbage (a newer CLI may add event types); a line that
  yields a recognised item (anything but ``unknown``) or a reply ends a run
  of garbage. The process is judged not to speak the protocol when
  :data:`GARBAGE_RUN_LINES` garbage lines come in a row, or when, before it
  printed anything recognised, its garbage has gone on for
  :data:`GARBAGE_SECONDS`. :attr:`OutputGuard.verdict` then holds the
  session's error text, ``provider output is not stream-json: <sample>``,
  the sample being the run's first line (at most :data:`SAMPLE_CHARS`
  characters); the handle stops the process and drops the rest of its output.

The guard is used from the process's stdout reader thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from corral.actors.normalized import Normalized
from corral.supervisor.process.lines import DroppedLine

__all__ = [
    "DROPPED_TYPE",
    "GARBAGE_RUN_LINES",
    "GARBAGE_SECONDS",
    "MAX_DROPPED_NOTES",
    "MAX_UNKNOWN_KEPT",
    "NOT_STREAM_JSON",
    "SAMPLE_CHARS",
    "OutputGuard",
    "dropped_line_text",
]

MAX_UNKNOWN_KEPT = 200
"""``unknown`` items kept (stored raw) per provider process; the rest are counted."""
MAX_DROPPED_NOTES = 20
"""Over-long line notes shown per provider process; the rest are counted."""
GARBAGE_RUN_LINES = 1000
"""Garbage lines in a row after which a process is stopped."""
GARBAGE_SECONDS = 5.0
"""How long a process that printed nothing recognised yet may go on printing garbage."""
SAMPLE_CHARS = 200
"""Characters of the sample line in the error text."""
DROPPED_TYPE = "corral.dropped"
"""The ``type`` of the raw row counting what was not stored."""
NOT_STREAM_JSON = "provider output is not stream-json"


def _size(n: int) -> str:
    """``8 MiB``, ``64 KiB`` or ``1,000 bytes``."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale:,} {unit}"
    return f"{n:,} bytes"


def dropped_line_text(line: DroppedLine) -> str:
    """The note shown for an over-long line."""
    return f"a provider output line of {line.size:,} bytes was dropped (limit {_size(line.limit)})"


def _is_json_object(line: bytes) -> bool:
    stripped = line.strip()
    if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
        return False
    try:
        return isinstance(orjson.loads(stripped), dict)
    except orjson.JSONDecodeError:
        return False


def _sample(text: str) -> str:
    text = text.strip()[:SAMPLE_CHARS]
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


class OutputGuard:
    """The rules above for one provider process (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._kept_unknown = 0
        self._notes = 0
        self._dropped = 0  # not stored since the last summary
        self._recognised = False  # anything recognised yet
        self._run = 0  # garbage lines in a row
        self._run_began = 0.0
        self._run_sample = ""
        self.verdict: str | None = None

    def take(self, line: bytes, found: list[Normalized], replied: bool) -> list[Normalized]:
        """One output line, what the dialect found in it and whether it answered
        it: the items to hand over (unknown ones past the cap are dropped). Once
        there is a verdict, nothing more is taken (nor counted)."""
        if self.verdict is not None:
            return []
        if replied or any(n.kind != "unknown" for n in found):
            self._recognised = True
            self._run = 0
        elif not _is_json_object(line):
            self._garbage(line[: SAMPLE_CHARS * 4].decode("utf-8", errors="replace"))
        out: list[Normalized] = []
        for n in found:
            if n.kind != "unknown":
                out.append(n)
            elif self._kept_unknown < MAX_UNKNOWN_KEPT:
                self._kept_unknown += 1
                out.append(n)
            else:
                self._dropped += 1
        return out

    def dropped_line(self, line: DroppedLine) -> list[Normalized]:
        """A line the splitter dropped as over-long: the note to show (if any)."""
        if self.verdict is not None:
            return []
        text = dropped_line_text(line)
        self._garbage(f"({text})")
        if self._notes >= MAX_DROPPED_NOTES:
            self._dropped += 1
            return []
        self._notes += 1
        return [Normalized(kind="system", text=text)]

    def summary(self) -> list[Normalized]:
        """The count of items not stored since the last summary, as one ``unknown``
        item (none when nothing was dropped); the count starts again."""
        if not self._dropped:
            return []
        raw = {"type": DROPPED_TYPE, "count": self._dropped, "limit": MAX_UNKNOWN_KEPT}
        self._dropped = 0
        return [Normalized(kind="unknown", raw=raw)]

    def _garbage(self, text: str) -> None:
        now = self._clock()
        if self._run == 0:
            self._run_began = now
            self._run_sample = _sample(text)
        self._run += 1
        too_long = not self._recognised and now - self._run_began >= GARBAGE_SECONDS
        if self._run >= GARBAGE_RUN_LINES or too_long:
            self.verdict = f"{NOT_STREAM_JSON}: {self._run_sample}"

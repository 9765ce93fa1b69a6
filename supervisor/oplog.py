"""The daemon's log output: level parsing, and the journal or the human format.

Under systemd, stderr is a stream to the journal: ``JOURNAL_STREAM`` then holds
``<device>:<inode>`` of that stream. When it matches the daemon's stderr, every
line is plain text with a ``<N>`` syslog priority prefix (``sd-daemon(3)``) and no
timestamp (the journal adds its own); a multi-line record (a traceback) carries
the prefix on each line. Otherwise (a terminal, a file, or a ``JOURNAL_STREAM``
inherited by a shell that is not the journal) lines are
``2024-05-01 12:00:00,123 INFO corral.ops: …``.

The operator's lines themselves (one per session event) are worded in
``corral.actors.oplog``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO

__all__ = ["LEVELS", "configure_logging", "is_journal", "parse_level"]

LEVELS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}

HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_level(text: str) -> int:
    """A log level by name (any case; ``WARN`` too), else ValueError saying the choices."""
    name = text.strip().upper()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {text!r} (use one of {', '.join(LEVELS)})")
    return LEVELS[name]


def syslog_priority(levelno: int) -> int:
    """The ``sd-daemon(3)`` priority of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, every line of a multi-line record prefixed."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def is_journal(env: Mapping[str, str], stream: IO[str]) -> bool:
    """``JOURNAL_STREAM`` names ``stream`` (its device and inode), as systemd asks to check."""
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (int(device), int(inode)) == (st.st_dev, st.st_ino)
    except (ValueError, OSError, AttributeError):
        return False


def configure_logging(
    level: int, env: Mapping[str, str] | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr), in the
    journal's format when ``stream`` is the journal; returns the handler."""
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        JournalFormatter() if is_journal(env, stream) else logging.Formatter(HUMAN_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler

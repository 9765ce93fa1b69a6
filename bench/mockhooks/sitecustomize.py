"""Benchmark hooks in the mock agent's processes (never in the daemon's).

Python imports this module at start-up when its directory is on PYTHONPATH.
It acts only in a process running the mock agent (the daemon inherits the same
environment and is left alone):

- ``BENCH_EMIT_LOG`` (a directory): each output line carrying a text or
  thinking block is logged, just before it is written, as
  ``<time_ns> <crc32 of the text>`` to ``BENCH_EMIT_LOG/<pid>.log`` (the
  ingest benchmark's emit times).
"""

from __future__ import annotations

import os
import sys
from typing import Any

MOCK = "corral.supervisor.providers.mock"


def _log_emits(directory: str) -> None:
    import time
    import zlib

    from corral.supervisor.providers.mock import agent

    log = open(os.path.join(directory, f"{os.getpid()}.log"), "a", buffering=1)  # noqa: SIM115
    original = agent.MockAgent.emit

    def emit(self: agent.MockAgent, obj: dict[str, Any]) -> None:
        message = obj.get("message") if obj.get("type") == "assistant" else None
        if isinstance(message, dict):
            block = message["content"][0]
            text = block.get("text") or block.get("thinking")
            if text:
                log.write(f"{time.time_ns()} {zlib.crc32(text.encode())}\n")
        original(self, obj)

    agent.MockAgent.emit = emit  # type: ignore[method-assign]


if MOCK in sys.orig_argv and os.environ.get("BENCH_EMIT_LOG"):
    _log_emits(os.environ["BENCH_EMIT_LOG"])

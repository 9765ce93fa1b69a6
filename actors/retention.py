"""Retention: which stored sessions to delete, as one store write.

The settings give a count per project (``session_retention_count``) and an
age (``session_retention_days``); live sessions are never touched. The store
runs the deletion in its own transaction (``EnforceRetention``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from corral.actors import oplog
from corral.actors.settings import Settings
from corral.actors.store import EnforceRetention, Write

log = logging.getLogger("corral.retention")

DAY_MS = 86_400_000


def retention_write(settings: Settings, protected: Iterable[str]) -> Write:
    """The store write that enforces retention now, sparing ``protected`` sessions."""

    def logged(results: list[Any]) -> None:
        if results and results[0]:
            oplog.retention_purged(len(results[0]))

    return Write(
        [
            EnforceRetention(
                keep_count=settings.int("session_retention_count"),
                max_age_ms=settings.int("session_retention_days") * DAY_MS,
                project_ids=None,
                protected=frozenset(protected),
            )
        ],
        then=logged,
    )

"""Starts in flight and idempotent starts: the registry's bookkeeping for ``agent.start``.

A :class:`PendingStart` is a session whose first prompt is being launched:
until its session reports ``Started`` or ``StartFailed`` the project answers
``start_in_progress``, and retried starts with the same idempotency key wait
on it. :class:`IdempotencyBook` keeps the first answer of each keyed start
for :data:`IDEMPOTENCY_TTL_S` so that a retry gets that answer again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pykka

from corral.actors.ports import ReplyTo
from corral.protocol.errors import RpcError

IDEMPOTENCY_TTL_S = 600.0
"""How long the first answer of a start with an ``idempotencyKey`` is kept."""

Key = tuple[str, str]


@dataclass
class PendingStart:
    session_id: str
    ref: pykka.ActorRef[Any]
    control: Any  # corral.actors.session.Control
    waiters: list[ReplyTo]
    key: Key | None
    dropped_env: list[str]


@dataclass
class Remembered:
    """An idempotent start: its first answer, kept for ten minutes."""

    created: float
    result: dict[str, Any] | None = None
    error: RpcError | None = None


class IdempotencyBook:
    def __init__(self, ttl_s: float = IDEMPOTENCY_TTL_S) -> None:
        self._ttl = ttl_s
        self._entries: dict[Key, Remembered] = {}

    def seen(self, key: Key) -> Remembered | None:
        """The remembered start for ``key`` (expired ones are forgotten first)."""
        cutoff = time.monotonic() - self._ttl
        for old in [k for k, v in self._entries.items() if v.created < cutoff]:
            del self._entries[old]
        return self._entries.get(key)

    def begin(self, key: Key) -> None:
        self._entries[key] = Remembered(time.monotonic())

    def answered(
        self, key: Key | None, result: dict[str, Any] | None = None, error: RpcError | None = None
    ) -> None:
        entry = self._entries.get(key) if key is not None else None
        if entry is not None:
            entry.result, entry.error = result, error

"""SessionRecord: a session's stored facts as a typed value.

The session actor keeps one :class:`SessionRecord` and changes it field by
field; the wire and the database see it only through :meth:`to_wire` (the
contract's Session object, plus cache-token counts) and
:meth:`SessionRecord.from_row` (a stored session, as ``actors.db`` returns
it). The status is not set here: it belongs to the session's
:class:`~corral.actors.state.Lifecycle`, which the actor copies in before each
commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from corral.actors import db
from corral.actors.normalized import Normalized
from corral.actors.state import Status


@dataclass
class SessionRecord:
    session_id: str
    project_id: str
    provider: str
    created_at: int
    updated_at: int
    status: Status = "idle"
    model: str | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    message_count: int = 0
    last_seq_id: int = 0
    provider_session_id: str | None = None
    error: str | None = None

    @classmethod
    def new(
        cls, session_id: str, project_id: str, provider: str, model: str | None
    ) -> SessionRecord:
        now = db.now_ms()
        return cls(session_id, project_id, provider, created_at=now, updated_at=now, model=model)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SessionRecord:
        """A stored session (the wire shape ``actors.db`` answers)."""
        return cls(
            session_id=row["sessionId"],
            project_id=row["projectId"],
            provider=row["provider"],
            created_at=int(row["createdAt"]),
            updated_at=int(row["updatedAt"]),
            status=row["status"],
            model=row.get("model"),
            cost_usd=float(row.get("costUsd", 0.0)),
            input_tokens=int(row.get("inputTokens", 0)),
            output_tokens=int(row.get("outputTokens", 0)),
            cache_read_tokens=int(row.get("cacheReadTokens", 0)),
            cache_creation_tokens=int(row.get("cacheCreationTokens", 0)),
            message_count=int(row.get("messageCount", 0)),
            last_seq_id=int(row.get("lastSeqId", 0)),
            provider_session_id=row.get("providerSessionId"),
            error=row.get("error"),
        )

    def to_wire(self) -> dict[str, Any]:
        """The contract's Session object (optional keys absent when unset)."""
        wire: dict[str, Any] = {
            "sessionId": self.session_id,
            "projectId": self.project_id,
            "provider": self.provider,
            "status": self.status,
            "model": self.model,
            "costUsd": self.cost_usd,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheReadTokens": self.cache_read_tokens,
            "cacheCreationTokens": self.cache_creation_tokens,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "messageCount": self.message_count,
            "lastSeqId": self.last_seq_id,
        }
        if self.error is not None:
            wire["error"] = self.error
        if self.provider_session_id is not None:
            wire["providerSessionId"] = self.provider_session_id
        return wire

    def add_usage(self, n: Normalized, cost_base: float) -> None:
        """A ``cost`` report: tokens add up; a cumulative cost is the provider
        session's total on top of ``cost_base`` (what earlier provider sessions
        cost), never lower than what is already recorded (a failed resume reports
        0); a per-turn cost adds."""
        if n.cost_usd is not None:
            if n.cost_cumulative:
                self.cost_usd = round(max(self.cost_usd, cost_base + n.cost_usd), 10)
            else:
                self.cost_usd = round(self.cost_usd + n.cost_usd, 10)
        self.input_tokens += n.input_tokens
        self.output_tokens += n.output_tokens
        self.cache_read_tokens += n.cache_read_tokens
        self.cache_creation_tokens += n.cache_creation_tokens

    def cost_event(self) -> dict[str, Any]:
        """The ``agent.cost`` event's data."""
        return {
            "sessionId": self.session_id,
            "costUsd": self.cost_usd,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheReadTokens": self.cache_read_tokens,
            "cacheCreationTokens": self.cache_creation_tokens,
        }

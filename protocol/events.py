"""Published events: the schema of each event's ``data``, topics and frames.

Project events go to ``project/<projectId>/<event>``, the daemon's own to
``daemon/<event>``. A frame is ``{"event", "boot", "eseq", "ts", "projectId"?,
"data"}``; ``eseq`` counts every event of one daemon run (all topics together),
so only a subscriber of everything (topic ``""``) can use it to detect loss.
"""

from __future__ import annotations

from typing import Any

from corral.protocol.shapes import (
    AGENT_MESSAGE,
    APPROVAL,
    APPROVAL_RESOLVED,
    BOOT,
    CONFLICT,
    HEALTH,
    NOTIFICATION,
    SESSION_STATUS,
)

__all__ = [
    "DAEMON_EVENTS",
    "EVENTS",
    "EVENT_FRAME",
    "HEARTBEAT_TOPIC",
    "PROJECT_EVENTS",
    "daemon_topic",
    "event_frame",
    "event_topic",
    "project_topic",
]

_MS = {"type": "integer", "minimum": 0, "description": "milliseconds since the Unix epoch"}
_COUNT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}


def _data(properties: dict[str, dict], required: tuple[str, ...] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }


EVENTS: dict[str, dict] = {
    "agent.message": _data(
        {
            "sessionId": _STR,
            "messages": {"type": "array", "minItems": 1, "items": AGENT_MESSAGE},
        }
    ),
    "agent.status": _data(
        {
            "sessionId": _STR,
            "status": SESSION_STATUS,
            "error": {"type": ["string", "null"], "description": "set when status is error"},
        },
        ("sessionId", "status"),
    ),
    "agent.cost": _data(
        {
            "sessionId": _STR,
            "costUsd": {"type": "number", "minimum": 0},
            "inputTokens": _COUNT,
            "outputTokens": _COUNT,
        }
    ),
    "approval.requested": APPROVAL,
    "approval.resolved": APPROVAL_RESOLVED,
    "agent.delta": _data(
        {
            "sessionId": _STR,
            "role": {"type": "string", "enum": ["assistant", "thinking"]},
            "text": {"type": "string", "description": "characters added to the streaming message"},
            "offset": {
                "type": "integer",
                "minimum": 0,
                "description": "characters of that message before these",
            },
            "afterSeq": {
                "type": "integer",
                "minimum": 0,
                "description": "the session's last stored seqId: the whole message comes later "
                "in agent.message with a larger seqId and replaces the preview",
            },
        }
    ),
    "notification": NOTIFICATION,
    "health": HEALTH,
    "conflict": CONFLICT,
    "daemon.started": _data(
        {
            "version": _STR,
            "pid": {"type": "integer", "minimum": 1},
            "startedAt": _MS,
            "endpoints": _data({"rpc": _STR, "events": _STR}),
        },
        (),
    ),
    "daemon.stopping": _data(
        {"reason": {"type": "string", "description": "why the daemon stops"}},
        (),
    ),
    "settings.changed": _data(
        {
            "key": {"type": "string", "description": "the setting that changed"},
            "value": {"type": "string", "description": "its new value"},
            "settings": {
                "type": "object",
                "description": "every setting after the change",
                "additionalProperties": _STR,
            },
        },
        ("settings",),
    ),
    "daemon.heartbeat": _data(
        {
            "live": _COUNT,
            "lastSeqIds": {
                "type": "object",
                "description": "sessionId -> last committed seqId, for the live sessions",
                "additionalProperties": _COUNT,
            },
        }
    ),
}

DAEMON_EVENTS: frozenset[str] = frozenset(
    {"daemon.started", "daemon.stopping", "settings.changed", "daemon.heartbeat"}
)
"""Events published on ``daemon/<event>``."""
PROJECT_EVENTS: frozenset[str] = frozenset(EVENTS) - DAEMON_EVENTS
"""Events published on ``project/<projectId>/<event>``."""

EVENT_FRAME: dict = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": list(EVENTS)},
        "boot": BOOT,
        "eseq": {"type": "integer", "minimum": 1},
        "ts": _MS,
        "projectId": _STR,
        "data": {"type": "object"},
    },
    "required": ["event", "boot", "eseq", "ts", "data"],
}
"""Schema of one event frame (the second ZeroMQ frame)."""


def project_topic(project_id: str, event: str) -> str:
    """Topic of a project event: ``project/<projectId>/<event>``."""
    return f"project/{project_id}/{event}"


def daemon_topic(event: str) -> str:
    """Topic of a daemon event: ``daemon/<event>``."""
    return f"daemon/{event}"


HEARTBEAT_TOPIC = daemon_topic("daemon.heartbeat")


def event_topic(event: str, project_id: str | None = None) -> str:
    """The topic of ``event``: the project's if a project is given, else the daemon's."""
    return daemon_topic(event) if project_id is None else project_topic(project_id, event)


def event_frame(
    event: str,
    boot: str,
    eseq: int,
    ts: int,
    data: dict[str, Any],
    project_id: str | None = None,
) -> dict[str, Any]:
    """Build one event frame (``projectId`` only when given)."""
    frame: dict[str, Any] = {"event": event, "boot": boot, "eseq": eseq, "ts": ts}
    if project_id is not None:
        frame["projectId"] = project_id
    frame["data"] = data
    return frame

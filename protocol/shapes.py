"""The contract's shared pieces: limits, enumerations, schema helpers and data shapes.

AgentMessage, Session, Notification, Health, Conflict and the small schemas
they are built from, defined once: :mod:`corral.protocol.methods` builds every
method's params and result from them, :mod:`corral.protocol.events` every
event's data, and ``rpc.describe`` and docs/protocol.md show them. Treat every
schema here as immutable: validators are compiled once from these objects.
"""

from __future__ import annotations

from typing import Any

from corral.protocol.errors import ALL_ERRORS
from corral.protocol.providers import provider_names

# --------------------------------------------------------------------------- limits

PROMPT_MAX_BYTES = 256 * 1024
"""Largest prompt, in UTF-8 bytes."""
STRING_MAX_BYTES = 4 * 1024
"""Largest value of every other string param, in UTF-8 bytes."""
PROJECT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_EXTRA_ENV = 256
MAX_ADDITIONAL_DIRECTORIES = 256
MAX_TURNS_LIMIT = 1_000_000
INT64_MAX = 2**63 - 1
"""Largest integer param that is compared with stored values (SQLite's integer range)."""
NO_NUL_PATTERN = r"^[^\x00]*$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+\[\]-]*$"
"""A model name: never starts with ``-`` (it becomes a CLI flag's value)."""
WORKTREE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A git worktree name: never starts with ``-``, no path separators."""
"""Strings that become a path, an argv entry or an environment value cannot hold NUL."""

PROVIDERS: tuple[str, ...] = provider_names()
"""Registered provider names (the ``corral.providers`` entry points)."""
PERMISSION_MODES: tuple[str, ...] = ("default", "acceptEdits", "bypassPermissions", "plan")
SESSION_STATUSES: tuple[str, ...] = ("idle", "running", "done", "error")
MESSAGE_ROLES: tuple[str, ...] = (
    "user",
    "assistant",
    "tool-call",
    "tool-result",
    "thinking",
    "system",
)
NOTIFICATION_VARIANTS: tuple[str, ...] = ("success", "warning", "error", "info")
NOTIFICATION_KINDS: tuple[str, ...] = (
    "agent_complete",
    "agent_stopped",
    "agent_error",
    "agent_stalled",
    "approval_needed",
    "conflict",
    "system",
)
ERROR_CLASSES: tuple[str, ...] = (
    "rate_limit",
    "auth",
    "quota",
    "overloaded",
    "network",
    "context_length",
    "cancelled",
    "unknown",
)
ACTIVITIES: tuple[str, ...] = ("inactive", "running", "idle", "waiting", "stalled")
SETTINGS_KEYS: tuple[str, ...] = (
    "permission_mode",
    "system_prompt_template",
    "default_cwd",
    "provider_settings",
    "session_retention_count",
    "session_retention_days",
    "stall_timeout_ms",
    "cleanup_grace_ms",
    "max_live_sessions",
    "approval_timeout_ms",
    "desktop_notifications",
)

GENERIC_ERRORS: tuple[str, ...] = (
    "parse_error",
    "invalid_request",
    "too_large",
    "method_not_found",
    "invalid_params",
    "internal_error",
    "overloaded",
    "shutting_down",
)
"""Reasons any request may be answered with, whatever its method."""

KNOWN_REASONS: frozenset[str] = frozenset(cls.reason for cls in ALL_ERRORS)

# --------------------------------------------------------------------------- helpers


def _str(
    description: str,
    *,
    max_bytes: int = STRING_MAX_BYTES,
    non_empty: bool = False,
    no_nul: bool = False,
) -> dict:
    schema: dict[str, Any] = {"type": "string", "description": description, "maxBytes": max_bytes}
    if non_empty:
        schema["minLength"] = 1
    if no_nul:
        schema["pattern"] = NO_NUL_PATTERN
    return schema


def _int(
    description: str, minimum: int | None = 0, maximum: int | None = None, **extra: Any
) -> dict:
    schema: dict[str, Any] = {"type": "integer", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    schema.update(extra)
    return schema


def _nullable(schema: dict) -> dict:
    """The same schema, also accepting null."""
    out = dict(schema)
    t = out["type"]
    out["type"] = [*([t] if isinstance(t, str) else t), "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _obj(
    properties: dict[str, dict],
    required: tuple[str, ...] | list[str] = (),
    *,
    description: str | None = None,
    closed: bool = False,
) -> dict:
    schema: dict[str, Any] = {"type": "object"}
    if description:
        schema["description"] = description
    schema["properties"] = properties
    schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def _params(properties: dict[str, dict] | None = None, required: tuple[str, ...] = ()) -> dict:
    """A params object: named params only, unknown params refused."""
    return _obj(properties or {}, required, closed=True)


def _result(properties: dict[str, dict], required: tuple[str, ...] | None = None) -> dict:
    """A result object: the listed members, more may be added later."""
    return _obj(properties, tuple(properties) if required is None else required)


# --------------------------------------------------------------------------- shapes

MS = "milliseconds since the Unix epoch"

BOOT: dict = {
    "type": "string",
    "description": "opaque identifier of one daemon run (changes on every start)",
}

PROJECT_ID: dict = {
    "type": "string",
    "description": "project identifier",
    "maxLength": 128,
    "pattern": PROJECT_ID_PATTERN,
}

SESSION_ID: dict = _str("session identifier", non_empty=True)
PROVIDER: dict = {"type": "string", "enum": list(PROVIDERS), "description": "agent provider"}
PERMISSION_MODE: dict = {
    "type": "string",
    "enum": list(PERMISSION_MODES),
    "description": "provider permission mode",
}
SESSION_STATUS: dict = {
    "type": "string",
    "enum": list(SESSION_STATUSES),
    "description": "session status; done and error are terminal until a new prompt",
}

AGENT_MESSAGE: dict = _obj(
    {
        "id": {"type": "string", "description": "message identifier"},
        "seqId": _int("1, 2, 3, ... within the session, no gaps; 1 is the first prompt", 1),
        "role": {"type": "string", "enum": list(MESSAGE_ROLES)},
        "content": {"type": "string"},
        "toolName": {"type": "string"},
        "toolInput": {"type": "string", "description": "the tool input, as JSON text"},
        "toolPath": {"type": "string", "description": "file path the tool touches"},
        "parentId": {"type": "string", "description": "the sub-agent's parent tool call"},
        "timestamp": _int(MS),
    },
    ("id", "seqId", "role", "content", "timestamp"),
    description="AgentMessage: one displayed message of a session",
)

SESSION: dict = _obj(
    {
        "sessionId": {"type": "string"},
        "projectId": {"type": "string"},
        "provider": {"type": "string", "description": "provider name (see agent.start)"},
        "status": SESSION_STATUS,
        "model": {"type": ["string", "null"], "description": "null until the provider says"},
        "costUsd": {"type": "number", "minimum": 0},
        "inputTokens": _int("input tokens so far"),
        "outputTokens": _int("output tokens so far"),
        "error": {"type": ["string", "null"], "description": "why the session ended in error"},
        "createdAt": _int(MS),
        "updatedAt": _int(MS),
        "messageCount": _int("number of stored messages"),
        "lastSeqId": _int("seqId of the last message, 0 if none"),
        "providerSessionId": {
            "type": ["string", "null"],
            "description": "the provider's own session id, used to resume",
        },
    },
    (
        "sessionId",
        "projectId",
        "provider",
        "status",
        "model",
        "costUsd",
        "inputTokens",
        "outputTokens",
        "createdAt",
        "updatedAt",
        "messageCount",
        "lastSeqId",
    ),
    description="Session",
)

NOTIFICATION: dict = _obj(
    {
        "id": {"type": "string"},
        "variant": {"type": "string", "enum": list(NOTIFICATION_VARIANTS)},
        "kind": {"type": "string", "enum": list(NOTIFICATION_KINDS)},
        "message": {"type": "string"},
        "projectId": {"type": "string", "description": "the project it is about, if any"},
        "sessionId": {"type": "string"},
        "ts": _int(MS),
        "errorClass": {
            "type": "string",
            "enum": list(ERROR_CLASSES),
            "description": "agent_error only: what kind of error",
        },
        "retryable": {"type": "boolean", "description": "agent_error only: worth a retry"},
    },
    ("id", "variant", "kind", "message", "ts"),
    description="Notification",
)

_NUMBER: dict = {"type": "number", "minimum": 0}
_ATTENTION: dict = _obj(
    {
        "score": _int(
            "0..100: stalled 100, waiting 95, error 90, context > 0.9 80, "
            "conflicts 70, context > 0.75 40",
            0,
            100,
        ),
        "reason": {"type": "string", "description": "one line a person can act on"},
    },
    ("score", "reason"),
)

HEALTH: dict = _obj(
    {
        "projectId": {"type": "string"},
        "sessionId": {"type": ["string", "null"]},
        "status": _nullable(SESSION_STATUS),
        "live": {"type": "boolean", "description": "the session is held by the daemon"},
        "activity": {"type": "string", "enum": list(ACTIVITIES)},
        "activeTool": {"type": ["string", "null"], "description": "the tool call in flight"},
        "toolSince": _nullable(_int(MS)),
        "lastActivity": _nullable(_int(MS)),
        "idleMs": _int("milliseconds since the last activity"),
        "toolCalls": _obj(
            {"started": _int("tool calls started"), "finished": _int("tool calls finished")},
            ("started", "finished"),
        ),
        "costUsd": _NUMBER,
        "inputTokens": _int("input tokens of the current session"),
        "outputTokens": _int("output tokens of the current session"),
        "cacheReadTokens": _int("cache-read tokens of the current session"),
        "cacheCreationTokens": _int("cache-creation tokens of the current session"),
        "burnRateUsdPerHour": _NUMBER,
        "tokensPerMinute": _NUMBER,
        "contextTokens": _int("input + cache-read + cache-creation tokens of the last turn"),
        "contextLimit": _int("the model's context window (200000 when unknown)", 1),
        "contextPressure": _NUMBER,
        "openConflicts": _int("open file conflicts of the project"),
        "attention": _ATTENTION,
        "stalled": {"type": "boolean", "description": "running with no activity for too long"},
        "messageCount": _int("messages of the current session"),
    },
    (
        "projectId",
        "sessionId",
        "status",
        "live",
        "activity",
        "activeTool",
        "toolSince",
        "lastActivity",
        "idleMs",
        "toolCalls",
        "costUsd",
        "inputTokens",
        "outputTokens",
        "cacheReadTokens",
        "cacheCreationTokens",
        "burnRateUsdPerHour",
        "tokensPerMinute",
        "contextTokens",
        "contextLimit",
        "contextPressure",
        "openConflicts",
        "attention",
        "stalled",
    ),
    description="Health of one project",
)

APPROVAL_DECISIONS: tuple[str, ...] = ("allow", "deny")
APPROVAL_RESOLVERS: tuple[str, ...] = ("client", "timeout", "stop", "restart")

APPROVAL: dict = _obj(
    {
        "approvalId": {"type": "string"},
        "sessionId": {"type": "string"},
        "projectId": {"type": "string"},
        "provider": {"type": "string"},
        "toolName": {"type": "string"},
        "input": {"type": "object", "description": "the tool call's input"},
        "summary": {
            "type": "string",
            "description": "one line: the command, or the path and the kind of change",
        },
        "createdAt": _int(MS),
        "suggestions": {
            "type": "array",
            "description": "what `remember` would allow (provider-specific)",
        },
    },
    (
        "approvalId",
        "sessionId",
        "projectId",
        "provider",
        "toolName",
        "input",
        "summary",
        "createdAt",
    ),
    description="Approval: an agent waits for a person to allow or deny a tool call",
)

APPROVAL_RESOLVED: dict = _obj(
    {
        "approvalId": {"type": "string"},
        "sessionId": {"type": "string"},
        "decision": {"type": "string", "enum": list(APPROVAL_DECISIONS)},
        "by": {"type": "string", "enum": list(APPROVAL_RESOLVERS)},
    },
    ("approvalId", "sessionId", "decision", "by"),
)

CONFLICT: dict = _obj(
    {
        "projectId": {"type": "string"},
        "path": {"type": "string", "description": "the file written by several sessions"},
        "sessionIds": {"type": "array", "items": {"type": "string"}},
        "projectIds": {"type": "array", "items": {"type": "string"}},
        "lastWriteTs": _int(MS),
        "acknowledged": {"type": "boolean"},
    },
    ("projectId", "path", "sessionIds", "projectIds", "lastWriteTs", "acknowledged"),
    description="Conflict: several sessions wrote the same file",
)

SESSION_OR_NULL: dict = _nullable(SESSION)

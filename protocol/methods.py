"""Every RPC method of the contract, defined once: params, result and errors.

The daemon validates requests with :func:`validate_params`, and ``rpc.describe``
answers :func:`describe`, so what is documented is what is enforced. The shared
data shapes (AgentMessage, Session, Notification, Health, ...) live here too;
:mod:`protocol.events` reuses them for event payloads.

Schemas use the subset understood by :mod:`protocol.schema`, plus the corral
keyword ``maxBytes`` (UTF-8 byte length of a string). Treat every schema here as
immutable: validators are compiled once from these objects.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

from corral.protocol import PROTOCOL_VERSION
from corral.protocol.errors import ALL_ERRORS, InvalidParams, MethodNotFound
from corral.protocol.providers import provider_names
from corral.protocol.schema import Validator, compile_schema

__all__ = [
    "AGENT_MESSAGE",
    "BOOT",
    "ENV_NAME_PATTERN",
    "GENERIC_ERRORS",
    "HEALTH",
    "KNOWN_REASONS",
    "MESSAGE_ROLES",
    "METHODS",
    "NOTIFICATION",
    "NOTIFICATION_KINDS",
    "NOTIFICATION_VARIANTS",
    "PERMISSION_MODES",
    "PROJECT_ID",
    "PROJECT_ID_PATTERN",
    "PROMPT_MAX_BYTES",
    "PROVIDERS",
    "SESSION",
    "SESSION_STATUSES",
    "SETTINGS_KEYS",
    "STRING_MAX_BYTES",
    "MethodSpec",
    "describe",
    "validate_params",
]

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
    "agent_error",
    "agent_stalled",
    "conflict",
    "system",
)
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
    },
    ("id", "variant", "kind", "message", "ts"),
    description="Notification",
)

HEALTH: dict = _obj(
    {
        "projectId": {"type": "string"},
        "sessionId": {"type": ["string", "null"]},
        "status": _nullable(SESSION_STATUS),
        "stalled": {"type": "boolean", "description": "running with no activity for too long"},
        "costUsd": {"type": "number", "minimum": 0},
        "inputTokens": _int("input tokens of the current session"),
        "outputTokens": _int("output tokens of the current session"),
        "lastActivity": _nullable(_int(MS)),
        "messageCount": _int("messages of the current session"),
    },
    (
        "projectId",
        "sessionId",
        "status",
        "stalled",
        "costUsd",
        "inputTokens",
        "outputTokens",
        "lastActivity",
        "messageCount",
    ),
    description="Health of one project",
)

CONFLICT: dict = _obj(
    {
        "projectId": {"type": "string"},
        "path": {"type": "string", "description": "the file written by several sessions"},
        "sessionIds": {"type": "array", "items": {"type": "string"}},
        "lastWriteTs": _int(MS),
    },
    ("projectId", "path", "sessionIds", "lastWriteTs"),
    description="Conflict: several sessions wrote the same file",
)

SESSION_OR_NULL: dict = _nullable(SESSION)

# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class MethodSpec:
    """One RPC method: its params and result schemas and its specific error reasons."""

    name: str
    summary: str
    params: dict
    result: dict
    errors: tuple[str, ...] = ()


_NO_PARAMS = _params()
_PROJECT_PARAMS = _params({"projectId": PROJECT_ID}, ("projectId",))
_OPTIONAL_PROJECT_PARAMS = _params({"projectId": PROJECT_ID})

_START_PARAMS = _params(
    {
        "projectId": PROJECT_ID,
        "provider": PROVIDER,
        "prompt": _str("the first prompt", max_bytes=PROMPT_MAX_BYTES, non_empty=True),
        "cwd": _str("working directory of the agent (absolute path)", non_empty=True, no_nul=True),
        "model": _str("model name; omit for the provider's default", non_empty=True, no_nul=True),
        "systemPrompt": _str(
            "system prompt for the agent (claude: replaces the default one, or is appended "
            "when providerConfig.appendSystemPrompt is true)",
            no_nul=True,
        ),
        "maxTurns": _int("maximum agent turns", 1, MAX_TURNS_LIMIT),
        "permissionMode": PERMISSION_MODE,
        "claudeConfigDir": _str(
            "CLAUDE_CONFIG_DIR for the claude provider", non_empty=True, no_nul=True
        ),
        "extraEnv": {
            "type": "object",
            "description": "extra environment variables (name -> value); "
            "refused names are reported in the result's droppedEnv",
            "maxProperties": MAX_EXTRA_ENV,
            "propertyNames": {"type": "string", "pattern": ENV_NAME_PATTERN, "maxBytes": 256},
            "additionalProperties": _str("environment variable value", no_nul=True),
        },
        "additionalDirectories": {
            "type": "array",
            "description": "more directories the agent may access",
            "maxItems": MAX_ADDITIONAL_DIRECTORIES,
            "items": _str("directory path", non_empty=True, no_nul=True),
        },
        "worktreeName": _str("name of a git worktree to run in", non_empty=True, no_nul=True),
        "providerConfig": {
            "type": "object",
            "description": "provider-specific options (validated by the daemon per provider)",
        },
        "idempotencyKey": _str(
            "a retried start with the same key within 10 minutes returns the first result",
            non_empty=True,
        ),
    },
    ("projectId", "provider", "prompt"),
)

_SPECS: tuple[MethodSpec, ...] = (
    MethodSpec(
        "daemon.ping",
        "Liveness check.",
        _NO_PARAMS,
        _result({"pong": {"const": True}, "boot": BOOT, "time": _int(MS)}),
    ),
    MethodSpec(
        "daemon.info",
        "Version, endpoints, data directory, session counts and provider availability.",
        _NO_PARAMS,
        _result(
            {
                "version": {"type": "string"},
                "boot": BOOT,
                "pid": _int("daemon process id", 1),
                "startedAt": _int(MS),
                "endpoints": _result({"rpc": {"type": "string"}, "events": {"type": "string"}}),
                "dataDir": {"type": "string"},
                "sessions": _result(
                    {"live": _int("live sessions"), "stored": _int("stored sessions")}
                ),
                "providers": {
                    "type": "object",
                    "description": "provider name -> availability",
                    "additionalProperties": _result(
                        {"available": {"type": "boolean"}, "detail": {"type": "string"}}
                    ),
                },
            }
        ),
    ),
    MethodSpec(
        "daemon.shutdown",
        "Answer, then stop the daemon gracefully.",
        _NO_PARAMS,
        _result({"stopping": {"const": True}}),
    ),
    MethodSpec(
        "rpc.describe",
        "This protocol's methods and events, as JSON Schemas.",
        _NO_PARAMS,
        _result(
            {
                "protocolVersion": {"const": PROTOCOL_VERSION},
                "methods": {
                    "type": "object",
                    "additionalProperties": _result(
                        {
                            "params": {"type": "object"},
                            "result": {"type": "object"},
                            "errors": {"type": "array", "items": {"type": "string"}},
                        }
                    ),
                },
                "events": {"type": "object", "additionalProperties": {"type": "object"}},
            }
        ),
    ),
    MethodSpec(
        "agent.start",
        "Start a new session for a project with a first prompt.",
        _START_PARAMS,
        _result(
            {
                "sessionId": {"type": "string"},
                "status": {"const": "running"},
                "model": {"type": ["string", "null"]},
                "droppedEnv": {
                    "type": "array",
                    "description": "extraEnv names that were refused",
                    "items": {"type": "string"},
                },
            }
        ),
        (
            "session_running",
            "start_in_progress",
            "provider_unavailable",
            "overloaded",
            "invalid_params",
        ),
    ),
    MethodSpec(
        "agent.stop",
        "Stop the project's current session.",
        _PROJECT_PARAMS,
        _result({"sessionId": {"type": "string"}, "status": SESSION_STATUS}),
        ("no_session", "start_in_progress"),
    ),
    MethodSpec(
        "agent.prompt",
        "Send a follow-up prompt to the project's current session.",
        _params(
            {
                "projectId": PROJECT_ID,
                "prompt": _str("the prompt", max_bytes=PROMPT_MAX_BYTES, non_empty=True),
            },
            ("projectId", "prompt"),
        ),
        _result(
            {
                "sessionId": {"type": "string"},
                "status": {"const": "running"},
                "seqId": _int("seqId of the prompt's user message", 1),
            }
        ),
        ("no_session", "start_in_progress", "provider_unavailable"),
    ),
    MethodSpec(
        "session.get",
        "The project's current session.",
        _PROJECT_PARAMS,
        _result({"session": SESSION_OR_NULL}),
    ),
    MethodSpec(
        "session.list",
        "Stored sessions, newest first.",
        _params(
            {
                "projectId": PROJECT_ID,
                "status": SESSION_STATUS,
                "limit": _int("at most this many sessions", 1, 500, default=50),
                "before": _int(f"only sessions created before this time ({MS})", maximum=INT64_MAX),
            }
        ),
        _result({"sessions": {"type": "array", "items": SESSION}}),
    ),
    MethodSpec(
        "session.load",
        "The newest stored session of the project.",
        _PROJECT_PARAMS,
        _result({"session": SESSION_OR_NULL}),
    ),
    MethodSpec(
        "session.messages.load",
        "Stored messages of a session after a seqId, ascending.",
        _params(
            {
                "sessionId": SESSION_ID,
                "afterSeq": _int("only messages with a larger seqId", 0, INT64_MAX, default=0),
                "limit": _int("at most this many messages", 1, 5000, default=500),
            },
            ("sessionId",),
        ),
        _result(
            {
                "messages": {"type": "array", "items": AGENT_MESSAGE},
                "lastSeqId": _int("the session's last stored seqId"),
                "hasMore": {"type": "boolean"},
            }
        ),
        ("not_found",),
    ),
    MethodSpec(
        "session.restore",
        "Make the newest done/error stored session the project's current one.",
        _PROJECT_PARAMS,
        _result({"restored": {"type": "boolean"}, "session": SESSION_OR_NULL}),
        ("start_in_progress",),
    ),
    MethodSpec(
        "session.clear",
        "Forget the project's current session if it is done or error (storage kept).",
        _PROJECT_PARAMS,
        _result({"cleared": {"type": "boolean"}}),
    ),
    MethodSpec(
        "session.purge",
        "Delete a session and its messages everywhere.",
        _params({"sessionId": SESSION_ID}, ("sessionId",)),
        _result({"purged": {"type": "boolean"}}),
        ("session_running",),
    ),
    MethodSpec(
        "project.purge",
        "Delete every session of a project and their messages.",
        _PROJECT_PARAMS,
        _result({"purgedSessions": _int("sessions deleted")}),
        ("session_running",),
    ),
    MethodSpec(
        "settings.getAll",
        "Every setting, as strings.",
        _NO_PARAMS,
        _result({"settings": {"type": "object", "additionalProperties": {"type": "string"}}}),
    ),
    MethodSpec(
        "settings.set",
        "Validate and store one setting; answers every setting.",
        _params(
            {
                "key": {"type": "string", "enum": list(SETTINGS_KEYS)},
                "value": _str("the new value (validated per key)", no_nul=True),
            },
            ("key", "value"),
        ),
        _result({"settings": {"type": "object", "additionalProperties": {"type": "string"}}}),
        ("invalid_params",),
    ),
    MethodSpec(
        "health.get",
        "Health of every project (or one) and aggregates.",
        _OPTIONAL_PROJECT_PARAMS,
        _result(
            {
                "projects": {"type": "array", "items": HEALTH},
                "aggregates": _result(
                    {
                        "running": _int("running sessions"),
                        "idle": _int("idle sessions"),
                        "stalled": _int("stalled sessions"),
                        "burnRateUsdPerHour": {"type": "number", "minimum": 0},
                    }
                ),
            }
        ),
    ),
    MethodSpec(
        "notifications.list",
        "Recent notifications, newest first.",
        _params({"limit": _int("at most this many notifications", 1, 100, default=50)}),
        _result({"notifications": {"type": "array", "items": NOTIFICATION}}),
    ),
    MethodSpec(
        "conflicts.list",
        "Files written by several sessions of a project.",
        _OPTIONAL_PROJECT_PARAMS,
        _result({"conflicts": {"type": "array", "items": CONFLICT}}),
    ),
    MethodSpec(
        "conflicts.ack",
        "Acknowledge (clear) the project's conflicts.",
        _PROJECT_PARAMS,
        _result({"acknowledged": _int("conflicts acknowledged")}),
    ),
)

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}

_VALIDATORS: dict[str, Validator] = {name: compile_schema(s.params) for name, s in METHODS.items()}
_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {k: p["default"] for k, p in s.params["properties"].items() if "default" in p}
    for name, s in METHODS.items()
}


def validate_params(method: str, params: object) -> dict[str, Any]:
    """Check ``params`` of ``method``; return them with top-level defaults filled in.

    Raises MethodNotFound for an unknown method and InvalidParams (``field`` = the
    first bad field, ``"params"`` when params is not an object). Missing or null
    params mean ``{}``. The input is never mutated.
    """
    validator = _VALIDATORS.get(method)
    if validator is None:
        shown = method if len(method) <= 100 else method[:100] + "..."
        raise MethodNotFound(f"unknown method {shown!r}")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise InvalidParams("params must be an object (named params)", field="params")
    validator(params)
    defaults = _DEFAULTS[method]
    if defaults and not defaults.keys() <= params.keys():
        return {**defaults, **params}
    return params


@functools.cache
def describe() -> dict[str, Any]:
    """The ``rpc.describe`` result (computed once; treat it as read-only)."""
    from corral.protocol.events import EVENTS

    return {
        "protocolVersion": PROTOCOL_VERSION,
        "methods": {
            name: {
                "params": {"description": spec.summary, **copy.deepcopy(spec.params)},
                "result": copy.deepcopy(spec.result),
                "errors": list(spec.errors),
            }
            for name, spec in METHODS.items()
        },
        "events": {name: copy.deepcopy(schema) for name, schema in EVENTS.items()},
    }

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
from corral.protocol.errors import InvalidParams, MethodNotFound
from corral.protocol.schema import Validator, compile_schema
from corral.protocol.shapes import (
    AGENT_MESSAGE,
    APPROVAL,
    APPROVAL_DECISIONS,
    BOOT,
    CONFLICT,
    ENV_NAME_PATTERN,
    GENERIC_ERRORS,
    HEALTH,
    INT64_MAX,
    KNOWN_REASONS,
    MAX_ADDITIONAL_DIRECTORIES,
    MAX_EXTRA_ENV,
    MAX_TURNS_LIMIT,
    MESSAGE_ROLES,
    MODEL_NAME_PATTERN,
    MS,
    NO_NUL_PATTERN,
    NOTIFICATION,
    NOTIFICATION_KINDS,
    NOTIFICATION_VARIANTS,
    PERMISSION_MODE,
    PERMISSION_MODES,
    PROJECT_ID,
    PROJECT_ID_PATTERN,
    PROMPT_MAX_BYTES,
    PROVIDER,
    PROVIDERS,
    SESSION,
    SESSION_ID,
    SESSION_OR_NULL,
    SESSION_STATUS,
    SESSION_STATUSES,
    SETTINGS_KEYS,
    STRING_MAX_BYTES,
    WORKTREE_NAME_PATTERN,
    _int,
    _params,
    _result,
    _str,
)

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
    "NO_NUL_PATTERN",
    "PERMISSION_MODES",
    "PROJECT_ID",
    "PROJECT_ID_PATTERN",
    "PROMPT_MAX_BYTES",
    "PROVIDERS",
    "SESSION",
    "SESSION_STATUS",
    "SESSION_STATUSES",
    "SETTINGS_KEYS",
    "STRING_MAX_BYTES",
    "MethodSpec",
    "describe",
    "validate_params",
]

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
        "model": {
            **_str("model name; omit for the provider's default", non_empty=True),
            "pattern": MODEL_NAME_PATTERN,
        },
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
        "worktreeName": {
            **_str("name of a git worktree to run in", non_empty=True),
            "pattern": WORKTREE_NAME_PATTERN,
        },
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
        "Stored messages of a session after a seqId, ascending. A page also ends once "
        "it holds 512 KiB of message text (always at least one message): go on while "
        "`hasMore`.",
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
                        "attention": {
                            "type": ["object", "null"],
                            "description": "the top project's projectId, score and reason",
                        },
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
    MethodSpec(
        "approvals.list",
        "Pending approvals (of a project, or all), oldest first.",
        _OPTIONAL_PROJECT_PARAMS,
        _result({"approvals": {"type": "array", "items": APPROVAL}}),
    ),
    MethodSpec(
        "agent.approve",
        "Answer a pending approval of the project's current session.",
        _params(
            {
                "projectId": PROJECT_ID,
                "approvalId": _str("the approval to answer", non_empty=True),
                "decision": {"type": "string", "enum": list(APPROVAL_DECISIONS)},
                "message": _str("told to the agent on deny", no_nul=True),
                "updatedInput": {
                    "type": "object",
                    "description": "allow only: the tool runs with this input instead",
                },
                "remember": {
                    "type": "boolean",
                    "description": "allow this kind of call for the rest of the session "
                    "where the provider supports it",
                },
            },
            ("projectId", "approvalId", "decision"),
        ),
        _result(
            {
                "approvalId": {"type": "string"},
                "decision": {"type": "string", "enum": list(APPROVAL_DECISIONS)},
            }
        ),
        ("no_session", "not_found"),
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

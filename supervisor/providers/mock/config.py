"""The ``mock`` provider's ``providerConfig``: its keys, defaults and validation.

Only the standard library is imported: the mock agent program imports this
module at start-up, and so does the daemon's provider adapter.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULTS",
    "INT_RANGES",
    "SHAPES",
    "MockConfigError",
    "config_schema",
    "validate_config",
]

DEFAULTS: dict[str, Any] = {
    "turns": 1,
    "toolCalls": 2,
    "delayMs": 50,
    "textBytes": 200,
    "hang": False,
    "failAfter": None,
    "flood": 0,
    "tools": None,
    "usage": None,
}
"""The ``providerConfig`` of a mock session when a key is absent."""

# key -> (minimum, maximum); the maxima are generous guards, not part of the contract.
INT_RANGES: dict[str, tuple[int, int]] = {
    "turns": (1, 1000),
    "toolCalls": (0, 1000),
    "delayMs": (0, 3_600_000),
    "textBytes": (1, 1_048_576),
    "failAfter": (0, 1_000_000_000),
    "flood": (0, 1_000_000),
}

MAX_TOOLS = 100
"""Most entries of ``tools``."""
MAX_TOOL_NAME_CHARS = 200
MAX_OUTPUT_BYTES = 1_048_576
"""Largest ``output`` of a ``tools`` entry, in UTF-8 bytes."""
MAX_TOKENS = 1_000_000_000
"""Largest count of a ``usage`` key."""

TOOL_BOOLEANS = ("isError", "hang", "ask")
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)

SHAPES: dict[str, dict[str, Any]] = {
    "tools": {
        "type": ["array", "null"],
        "maxItems": MAX_TOOLS,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "input"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": MAX_TOOL_NAME_CHARS},
                "input": {"type": "object"},
                "output": {"type": "string", "maxBytes": MAX_OUTPUT_BYTES},
                **{key: {"type": "boolean"} for key in TOOL_BOOLEANS},
            },
        },
    },
    "usage": {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            key: {"type": "integer", "minimum": 0, "maximum": MAX_TOKENS} for key in USAGE_KEYS
        },
    },
}
"""JSON Schema of the keys that are neither integers nor booleans (with ``default`` and
``description`` added by :func:`config_schema`); :func:`validate_config` checks the same."""


class MockConfigError(ValueError):
    """A bad ``providerConfig`` for the mock provider; ``field`` names the key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def validate_config(config: object) -> dict[str, Any]:
    """Check a mock ``providerConfig`` and return it complete with defaults.

    ``None`` means "no config". Unknown keys, wrong types (``bool`` is not an
    int) and out-of-range values raise :class:`MockConfigError`.
    """
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise MockConfigError("providerConfig", "must be an object")
    out = dict(DEFAULTS)
    for key, value in config.items():
        if not isinstance(key, str) or key not in DEFAULTS:
            raise MockConfigError(str(key), "unknown key")
        if key == "hang":
            if not isinstance(value, bool):
                raise MockConfigError(key, "must be a boolean")
            out[key] = value
            continue
        if (key == "failAfter" or key in SHAPES) and value is None:
            out[key] = None
            continue
        if key == "tools":
            out[key] = _tools(value)
            continue
        if key == "usage":
            out[key] = _usage(value)
            continue
        low, high = INT_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise MockConfigError(key, "must be an integer")
        if value < low or value > high:
            raise MockConfigError(key, f"must be between {low} and {high}")
        out[key] = value
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tools(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise MockConfigError("tools", "must be a list")
    if len(value) > MAX_TOOLS:
        raise MockConfigError("tools", f"must have at most {MAX_TOOLS} entries")
    entries = []
    for index, entry in enumerate(value):
        where = f"tools.{index}"
        if not isinstance(entry, dict):
            raise MockConfigError(where, "must be an object")
        for key, item in entry.items():
            field = f"{where}.{key}"
            if key == "name":
                if not isinstance(item, str) or not 1 <= len(item) <= MAX_TOOL_NAME_CHARS:
                    raise MockConfigError(
                        field, f"must be a string of 1 to {MAX_TOOL_NAME_CHARS} characters"
                    )
            elif key == "input":
                if not isinstance(item, dict):
                    raise MockConfigError(field, "must be an object")
            elif key == "output":
                if not isinstance(item, str) or len(item.encode("utf-8")) > MAX_OUTPUT_BYTES:
                    raise MockConfigError(
                        field, f"must be a string of at most {MAX_OUTPUT_BYTES} bytes"
                    )
            elif key in TOOL_BOOLEANS:
                if not isinstance(item, bool):
                    raise MockConfigError(field, "must be a boolean")
            else:
                raise MockConfigError(field, "unknown key")
        for key in ("name", "input"):
            if key not in entry:
                raise MockConfigError(f"{where}.{key}", "required field is missing")
        entries.append(dict(entry))
    return entries


def _usage(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise MockConfigError("usage", "must be an object")
    for key, item in value.items():
        field = f"usage.{key}"
        if key not in USAGE_KEYS:
            raise MockConfigError(field, "unknown key")
        if not _is_int(item) or not 0 <= item <= MAX_TOKENS:
            raise MockConfigError(field, f"must be an integer between 0 and {MAX_TOKENS}")
    return dict(value)


EFFECTS: dict[str, str] = {
    "turns": "assistant turns answered per prompt",
    "toolCalls": "tool call + tool result pairs per turn",
    "delayMs": "pause between output lines",
    "textBytes": "size of each assistant text, in bytes",
    "hang": "after init, print nothing more and stay running until stopped",
    "failAfter": (
        "exit with code 1 after this many output lines (the session ends in `error`); null: never"
    ),
    "flood": "first print this many assistant texts as fast as possible",
    "tools": (
        "each turn makes exactly these tool calls, in order, instead of the generated ones "
        "(`toolCalls` is then ignored): entries "
        '`{"name", "input": {}, "output"?: "ok", "isError"?, "hang"?, "ask"?}`; `hang`: '
        "print the tool_use, then nothing until stopped; `ask`: first ask for permission with "
        "a Claude Code `can_use_tool` control request when the permission mode can ask "
        "(a deny makes the refusal its result). Nothing is executed"
    ),
    "usage": (
        "the token usage each turn's result reports: `input_tokens`, `output_tokens`, "
        "`cache_read_input_tokens`, `cache_creation_input_tokens` (missing keys keep "
        "their simulated values)"
    ),
}
"""What each key does (documentation; every key of DEFAULTS has words here)."""


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the mock's ``providerConfig``, made from DEFAULTS,
    INT_RANGES and SHAPES (so the program's checks and the documented schema
    cannot drift)."""
    properties: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        words = EFFECTS.get(key, "")
        if key in SHAPES:
            properties[key] = {**SHAPES[key], "default": default, "description": words}
            continue
        if isinstance(default, bool):
            properties[key] = {"type": "boolean", "default": default, "description": words}
            continue
        low, high = INT_RANGES[key]
        kind: str | list[str] = ["integer", "null"] if default is None else "integer"
        properties[key] = {
            "type": kind,
            "minimum": low,
            "maximum": high,
            "default": default,
            "description": words,
        }
    return {"type": "object", "additionalProperties": False, "properties": properties}

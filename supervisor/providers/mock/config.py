"""The ``mock`` provider's ``providerConfig``: its keys, defaults and validation.

Only the standard library is imported: the mock agent program imports this
module at start-up, and so does the daemon's provider adapter.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS", "INT_RANGES", "MockConfigError", "validate_config"]

DEFAULTS: dict[str, Any] = {
    "turns": 1,
    "toolCalls": 2,
    "delayMs": 50,
    "textBytes": 200,
    "hang": False,
    "failAfter": None,
    "flood": 0,
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
        if key == "failAfter" and value is None:
            out[key] = None
            continue
        low, high = INT_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise MockConfigError(key, "must be an integer")
        if value < low or value > high:
            raise MockConfigError(key, f"must be between {low} and {high}")
        out[key] = value
    return out


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
}
"""What each key does (documentation; every key of DEFAULTS has words here)."""


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the mock's ``providerConfig``, made from DEFAULTS and
    INT_RANGES (so the program's checks and the documented schema cannot drift)."""
    properties: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        words = EFFECTS.get(key, "")
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

"""The ollama provider's ``providerConfig``: its JSON Schema, validation and defaults.

==================== ======================= ==============================================
key                  type, default           effect
==================== ======================= ==============================================
``tools``            bool, false             offer the model corral's tools (``tools.py``)
                                             when the model can call tools
``think``            bool, ``low``,          thinking; ``null`` means on when the model can
                     ``medium``, ``high`` or think. Never sent to a model that cannot
                     null, null
``options``          object, {}              model options passed to Ollama as they are
                                             (``temperature``, ``num_ctx``, ``seed``, ...;
                                             the names the ollama client knows, plus
                                             ``min_p``); unknown names are refused
``keepAlive``        Go duration string      how long the server keeps the model loaded
                     (``"10m"``) or seconds, after the request (negative: for ever)
                     none (server default)
==================== ======================= ==============================================

There is no ``host`` key: the server is the daemon's choice
(``provider_settings.ollama.config.host``, else ``OLLAMA_HOST``), not a
client's, as ``extraEnv`` may not set ``OLLAMA_*`` either.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any

import ollama

from corral.protocol.errors import InvalidParams
from corral.protocol.schema import compile_schema

__all__ = ["CONFIG_SCHEMA", "OllamaConfig", "parse_config", "validate_config"]

GO_DURATION = r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)"
"""What Go's ``time.ParseDuration`` (the server's parser for ``keep_alive``) accepts."""

_EXTRA_OPTIONS: dict[str, Any] = {"min_p": {"type": "number", "minimum": 0, "maximum": 1}}
"""Server options this client version's ``Options`` does not list."""

_BOUNDS: dict[str, dict[str, Any]] = {
    "num_ctx": {"minimum": 1},
    "temperature": {"minimum": 0},
    "top_k": {"minimum": 0},
    "top_p": {"minimum": 0, "maximum": 1},
    "typical_p": {"minimum": 0, "maximum": 1},
}


def _option_schema(annotation: Any) -> dict[str, Any]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = args[0]
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        return {"type": "integer"}
    if kind is float:
        return {"type": "number"}
    if typing.get_origin(kind) is not None:  # Sequence[str]: stop words
        return {"type": "array", "items": {"type": "string", "maxLength": 256}, "maxItems": 32}
    return {"type": ["string", "number", "boolean"]}


def _options_properties() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, info in ollama.Options.model_fields.items():
        props[name] = {**_option_schema(info.annotation), **_BOUNDS.get(name, {})}
    for name, schema in _EXTRA_OPTIONS.items():
        props.setdefault(name, schema)
    return dict(sorted(props.items()))


CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tools": {
            "type": "boolean",
            "default": False,
            "description": "offer the model corral's tools (read files, list directories, "
            "and run commands in bypassPermissions mode) when it can call tools",
        },
        "think": {
            "type": ["boolean", "string", "null"],
            "enum": [True, False, None, "low", "medium", "high"],
            "default": None,
            "description": "thinking: null = on when the model can think",
        },
        "options": {
            "type": "object",
            "additionalProperties": False,
            "properties": _options_properties(),
            "default": {},
            "description": "model options passed to Ollama (temperature, num_ctx, ...)",
        },
        "keepAlive": {
            "type": ["string", "number"],
            "maxLength": 32,
            "pattern": GO_DURATION,
            "description": "how long the server keeps the model loaded: a duration "
            'such as "10m", or seconds (negative: for ever)',
        },
    },
}
"""JSON Schema of the ollama ``providerConfig`` (validation, ``rpc.describe``, docs)."""

_VALIDATOR = compile_schema(CONFIG_SCHEMA)

_HOST_REFUSAL = (
    "providerConfig.host: the ollama server is chosen by the daemon's settings "
    "(provider_settings.ollama.config.host or OLLAMA_HOST), not per session"
)


def validate_config(config: object) -> dict[str, Any]:
    """The checked ``providerConfig`` (a copy; ``None`` is ``{}``).

    Raises InvalidParams whose ``field`` is ``providerConfig.<key>`` (or the
    nested path, ``providerConfig.options.temperature``).
    """
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidParams("providerConfig must be an object", field="providerConfig")
    if "host" in config:
        raise InvalidParams(_HOST_REFUSAL, field="providerConfig.host")
    _VALIDATOR(config, "providerConfig")
    keep_alive = config.get("keepAlive")
    if isinstance(keep_alive, float) and not math.isfinite(keep_alive):
        raise InvalidParams(
            "providerConfig.keepAlive: must be a finite number", field="providerConfig.keepAlive"
        )
    out = dict(config)
    if "options" in out:
        out["options"] = dict(out["options"])
    return out


@dataclass(frozen=True)
class OllamaConfig:
    """A validated ``providerConfig`` with its defaults filled in."""

    tools: bool = False
    think: bool | str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: float | str | None = None

    @property
    def num_ctx(self) -> int | None:
        """The context window the options ask for, if any."""
        value = self.options.get("num_ctx")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_config(config: object) -> OllamaConfig:
    """:func:`validate_config`, as an :class:`OllamaConfig`."""
    checked = validate_config(config)
    return OllamaConfig(
        tools=bool(checked.get("tools", False)),
        think=checked.get("think"),
        options=dict(checked.get("options", {})),
        keep_alive=checked.get("keepAlive"),
    )

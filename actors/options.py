"""Resolving `agent.start` params into a session's launch options.

Missing options come from the settings (the seed's rules), and the client's
`extraEnv` is filtered; dropped keys are reported (the result's `droppedEnv`):

- keys that could redirect or reconfigure a provider (CLAUDE*, CODEX*,
  OLLAMA*, ANTHROPIC_*), except `CLAUDE_CODE_EXPERIMENTAL_*`, which passes;
- loader and interpreter hooks that would run code of the client's choosing
  inside the provider process (:data:`HOOK_VARS`: `LD_PRELOAD`, `PYTHONPATH`, ...).

`cwd`, `claudeConfigDir` and each of `additionalDirectories` must be existing
absolute directories.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams

_BLOCKED_PREFIXES = ("CLAUDE", "CODEX", "OLLAMA", "ANTHROPIC_")
_ALLOWED_PREFIXES = ("CLAUDE_CODE_EXPERIMENTAL_",)
HOOK_VARS = frozenset(
    {
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
        "BASH_ENV",
        "ENV",
    }
)
"""Variables that make the dynamic loader, Python, node or a shell run extra code."""

# Start params that are launch options (stored with the session, reused on resume).
OPTION_KEYS = (
    "cwd",
    "model",
    "systemPrompt",
    "maxTurns",
    "permissionMode",
    "claudeConfigDir",
    "extraEnv",
    "additionalDirectories",
    "worktreeName",
    "providerConfig",
)


def filter_env(extra_env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(kept, dropped keys) of a client's extraEnv."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in extra_env.items():
        blocked = key.startswith(_BLOCKED_PREFIXES) and not key.startswith(_ALLOWED_PREFIXES)
        if blocked or key in HOOK_VARS:
            dropped.append(key)
        else:
            kept[key] = value
    return kept, sorted(dropped)


def _check_dir(path: object, field: str) -> None:
    if not isinstance(path, str) or not os.path.isabs(path) or not os.path.isdir(path):
        raise InvalidParams(f"{field} must be an existing absolute directory", field=field)


def resolve(params: Mapping[str, Any], settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """Launch options for a start request, and the dropped env keys.

    Raises InvalidParams for a `cwd`, `claudeConfigDir` or `additionalDirectories`
    entry that is not an existing absolute directory (naming it).
    """
    provider = params["provider"]
    options: dict[str, Any] = {k: params[k] for k in OPTION_KEYS if params.get(k) is not None}
    if "permissionMode" not in options:
        options["permissionMode"] = settings.values["permission_mode"]
    if "systemPrompt" not in options and settings.values["system_prompt_template"]:
        options["systemPrompt"] = settings.values["system_prompt_template"]
    if "cwd" not in options:
        options["cwd"] = settings.values["default_cwd"] or os.path.expanduser("~")
    else:
        _check_dir(options["cwd"], "cwd")
    if "claudeConfigDir" in options:
        _check_dir(options["claudeConfigDir"], "claudeConfigDir")
    for index, directory in enumerate(options.get("additionalDirectories", [])):
        _check_dir(directory, f"additionalDirectories.{index}")
    if "model" not in options:
        default_model = settings.provider(provider).get("defaultModel")
        if isinstance(default_model, str) and default_model:
            options["model"] = default_model
    kept, dropped = filter_env(options.get("extraEnv", {}))
    options["extraEnv"] = kept
    return options, dropped

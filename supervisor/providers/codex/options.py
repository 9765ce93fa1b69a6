"""What a codex session asks of Codex: approval policy, sandbox and thread settings.

Owns three things:

* :data:`PERMISSION_MODES` — corral's ``permissionMode`` mapped onto Codex's
  ``(approvalPolicy, sandbox)`` pair;
* :data:`CONFIG_SCHEMA` and :func:`validate_config` — the session's
  ``providerConfig`` (checked with corral's schema subset, errors naming
  ``providerConfig.<key>``);
* :func:`session_options` — one :class:`CodexSessionOptions` from the session's
  options, its ``providerConfig`` and the operator's
  ``provider_settings.codex.config``, which :class:`~.protocol.CodexProtocol`
  turns into ``thread/start`` / ``thread/resume`` / ``turn/start`` params.

=================== ============== ==================
permissionMode      approvalPolicy sandbox
=================== ============== ==================
bypassPermissions   never          danger-full-access
acceptEdits         on-request     workspace-write
default             on-request     workspace-write
plan                on-request     read-only
=================== ============== ==================

Checked with the real CLI (0.169.0): under ``on-request`` + ``workspace-write``
a command that stays in the sandbox (``echo hi > out.txt`` in the workspace)
runs without asking; Codex asks only to leave the sandbox (an escalation with
a reason, network, extra permissions). ``untrusted`` asks before every command
that is not a known read-only one and before every patch; ``never`` never asks.
The answers are ``approvals.py``'s.

``providerConfig.approvalPolicy`` and ``providerConfig.sandbox`` override the
table; ``providerConfig.config`` is passed as the thread's ``config`` (Codex
``config.toml`` keys, dotted for nesting, as with ``codex -c key=value``).
``additionalDirectories`` become extra writable roots of the workspace-write
sandbox (``sandbox_workspace_write.writable_roots``). ``maxTurns`` and
``worktreeName`` have no Codex equivalent and are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.protocol.errors import InvalidParams
from corral.protocol.schema import compile_schema
from corral.supervisor.providers.codex.pricing import Price, parse_prices

__all__ = [
    "APPROVAL_POLICIES",
    "CONFIG_SCHEMA",
    "PERMISSION_MODES",
    "SANDBOX_MODES",
    "CodexSessionOptions",
    "policy_for",
    "session_options",
    "validate_config",
]

APPROVAL_POLICIES = ("untrusted", "on-request", "never")
SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")

#: permissionMode -> (approvalPolicy, sandbox)
PERMISSION_MODES: dict[str, tuple[str, str]] = {
    "bypassPermissions": ("never", "danger-full-access"),
    "acceptEdits": ("on-request", "workspace-write"),
    "default": ("on-request", "workspace-write"),
    "plan": ("on-request", "read-only"),
}
DEFAULT_PERMISSION_MODE = "default"

WRITABLE_ROOTS_KEY = "sandbox_workspace_write.writable_roots"

#: JSON Schema (corral's subset, see ``protocol/schema.py``) of ``providerConfig``.
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "approvalPolicy": {
            "enum": list(APPROVAL_POLICIES),
            "description": "Codex approval policy; overrides the one permissionMode implies.",
        },
        "sandbox": {
            "enum": list(SANDBOX_MODES),
            "description": "Codex sandbox mode; overrides the one permissionMode implies.",
        },
        "config": {
            "type": "object",
            "maxProperties": 64,
            "propertyNames": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": (
                "Codex config.toml overrides for this thread (dotted keys for nesting, "
                "as with `codex -c key=value`)."
            ),
        },
        "effort": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "Reasoning effort for every turn (e.g. low, medium, high).",
        },
    },
}

_validator = compile_schema(CONFIG_SCHEMA)


def validate_config(config: object) -> dict[str, Any]:
    """The checked ``providerConfig``; raises InvalidParams naming ``providerConfig.<key>``."""
    if not isinstance(config, dict):
        raise InvalidParams("providerConfig must be an object", field="providerConfig")
    _validator(config, "providerConfig")
    return dict(config)


def policy_for(permission_mode: str | None, provider_config: Mapping[str, Any]) -> tuple[str, str]:
    """(approvalPolicy, sandbox) for a permission mode, with providerConfig overrides."""
    mode = permission_mode or DEFAULT_PERMISSION_MODE
    approval, sandbox = PERMISSION_MODES.get(mode, PERMISSION_MODES[DEFAULT_PERMISSION_MODE])
    override_approval = provider_config.get("approvalPolicy")
    if isinstance(override_approval, str) and override_approval in APPROVAL_POLICIES:
        approval = override_approval
    override_sandbox = provider_config.get("sandbox")
    if isinstance(override_sandbox, str) and override_sandbox in SANDBOX_MODES:
        sandbox = override_sandbox
    return approval, sandbox


@dataclass
class CodexSessionOptions:
    """Everything :class:`~.protocol.CodexProtocol` needs to open and drive a thread."""

    cwd: str | None = None
    model: str | None = None
    approval_policy: str = "on-request"
    sandbox: str = "workspace-write"
    developer_instructions: str | None = None
    #: Codex config overrides for the thread (``thread/start``'s ``config``)
    config: dict[str, Any] = field(default_factory=dict)
    effort: str | None = None
    #: continue this thread (``thread/resume``) instead of starting one
    resume_thread_id: str | None = None
    #: the operator's price overrides (see ``pricing.py``)
    prices: dict[str, Price] = field(default_factory=dict)
    client_name: str = "corral"
    client_version: str = "0"

    def thread_params(self) -> dict[str, Any]:
        """Params of ``thread/start`` (unset values are left out)."""
        params: dict[str, Any] = {
            "approvalPolicy": self.approval_policy,
            "sandbox": self.sandbox,
        }
        if self.cwd:
            params["cwd"] = self.cwd
        if self.model:
            params["model"] = self.model
        if self.developer_instructions:
            params["developerInstructions"] = self.developer_instructions
        if self.config:
            params["config"] = dict(self.config)
        return params

    def resume_params(self, thread_id: str) -> dict[str, Any]:
        """Params of ``thread/resume``: the thread without its turns (corral has the
        transcript), with the same policy, sandbox, cwd, model and config as a start.
        The developer instructions are already part of the thread and are not repeated."""
        params: dict[str, Any] = {"threadId": thread_id, "excludeTurns": True}
        params.update(
            {k: v for k, v in self.thread_params().items() if k != "developerInstructions"}
        )
        return params


def session_options(
    options: Mapping[str, Any],
    operator_config: Mapping[str, Any] | None = None,
    *,
    resume_thread_id: str | None = None,
    default_model: str | None = None,
    client_version: str = "0",
) -> CodexSessionOptions:
    """Options for one session from ``agent.start``'s options (``cwd``, ``model``,
    ``systemPrompt``, ``permissionMode``, ``additionalDirectories``,
    ``providerConfig``) and the operator's ``provider_settings.codex.config``.

    Raises ValueError when the operator's ``prices`` are malformed.
    """
    operator_config = operator_config or {}
    provider_config = options.get("providerConfig") or {}
    if not isinstance(provider_config, Mapping):
        provider_config = {}
    approval, sandbox = policy_for(options.get("permissionMode"), provider_config)
    config: dict[str, Any] = {}
    extra_config = provider_config.get("config")
    if isinstance(extra_config, Mapping):
        config.update(extra_config)
    directories = [d for d in options.get("additionalDirectories") or [] if isinstance(d, str)]
    if directories and sandbox == "workspace-write" and WRITABLE_ROOTS_KEY not in config:
        config[WRITABLE_ROOTS_KEY] = directories
    model = options.get("model") or default_model
    effort = provider_config.get("effort")
    system_prompt = options.get("systemPrompt")
    return CodexSessionOptions(
        cwd=options.get("cwd") or None,
        model=model if isinstance(model, str) and model else None,
        approval_policy=approval,
        sandbox=sandbox,
        developer_instructions=system_prompt if isinstance(system_prompt, str) else None,
        config=config,
        effort=effort if isinstance(effort, str) else None,
        resume_thread_id=resume_thread_id,
        prices=parse_prices(operator_config.get("prices")),
        client_version=client_version,
    )

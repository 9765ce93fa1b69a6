"""The mock agent's permission prompts, shaped as Claude Code's ``--permission-prompt-tool stdio``.

Owns when a scripted call with ``ask: true`` asks (the permission mode, what
was remembered), the ``can_use_tool`` control request it prints, and what a
``control_response`` decides. The agent (``agent.py``) prints the request and
waits for the answer. Only the standard library is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ASKING_MODES", "EDIT_TOOLS", "PERMISSION_MODES", "Permissions"]

PERMISSION_MODES = ("default", "acceptEdits", "bypassPermissions", "plan")
ASKING_MODES = frozenset({"default", "acceptEdits", "plan"})
"""Modes in which a call may ask (``acceptEdits`` never asks for a file edit)."""
EDIT_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})


class Permissions:
    """One process's permission mode and the allow rules remembered from answers."""

    def __init__(self, mode: str | None) -> None:
        self.mode = mode
        self.rules: set[tuple[str, str | None]] = set()
        """(tool name, rule content or None for any call of the tool)."""

    def may_ask(self, name: str, tool_input: dict[str, Any]) -> bool:
        """Does this call need a person's answer?"""
        if self.mode not in ASKING_MODES or (self.mode == "acceptEdits" and name in EDIT_TOOLS):
            return False
        command = tool_input.get("command")
        for tool, content in self.rules:
            if tool != name:
                continue
            if content is None or content == command:
                return False
            prefix = content.endswith(":*") and isinstance(command, str)
            if prefix and str(command).startswith(content[:-2]):
                return False
        return True

    @staticmethod
    def suggestions(name: str, tool_input: dict[str, Any]) -> list[dict[str, Any]]:
        """What Claude Code offers to remember for such a call."""
        if name in EDIT_TOOLS:
            return [{"type": "setMode", "mode": "acceptEdits", "destination": "session"}]
        rule: dict[str, Any] = {"toolName": name}
        if name == "Bash" and isinstance(tool_input.get("command"), str):
            rule["ruleContent"] = tool_input["command"]
        return [
            {
                "type": "addRules",
                "rules": [rule],
                "behavior": "allow",
                "destination": "localSettings",
            }
        ]

    def request(
        self, request_id: str, tool_id: str, name: str, tool_input: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``control_request`` line that asks."""
        return {
            "type": "control_request",
            "request_id": request_id,
            "request": {
                "subtype": "can_use_tool",
                "tool_name": name,
                "input": tool_input,
                "permission_suggestions": self.suggestions(name, tool_input),
                "tool_use_id": tool_id,
            },
        }

    def decide(self, answer: dict[str, Any], name: str) -> tuple[str | None, bool]:
        """What a ``control_response``'s ``response`` decides: ``(None, False)`` to
        run the call (remembering its ``updatedPermissions``), else ``(refusal,
        interrupt)``."""
        inner = answer.get("response") if answer.get("subtype") == "success" else None
        if not isinstance(inner, dict):
            error = answer.get("error")
            return (
                error if isinstance(error, str) and error else "permission request failed"
            ), False
        if inner.get("behavior") == "allow":
            self.remember(inner.get("updatedPermissions"))
            return None, False
        message = inner.get("message")
        if not isinstance(message, str) or not message:
            message = f"Permission to use {name} has been denied."
        return message, inner.get("interrupt") is True

    def remember(self, permissions: object) -> None:
        """Apply ``updatedPermissions``: ``setMode`` and ``addRules`` allow rules."""
        if not isinstance(permissions, list):
            return
        for update in permissions:
            if not isinstance(update, dict):
                continue
            if update.get("type") == "setMode" and update.get("mode") in PERMISSION_MODES:
                self.mode = update["mode"]
            elif update.get("type") == "addRules" and update.get("behavior") == "allow":
                for rule in update.get("rules") or []:
                    if isinstance(rule, dict) and isinstance(rule.get("toolName"), str):
                        content = rule.get("ruleContent")
                        self.rules.add(
                            (rule["toolName"], content if isinstance(content, str) else None)
                        )

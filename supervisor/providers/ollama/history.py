"""Rebuilding an ollama conversation from a session's stored AgentMessages.

Ollama is stateless: every request carries the whole conversation. After a
restore, or when a session's handle is opened again, the conversation is
rebuilt from the stored transcript (in seqId order):

=============== ==================================================================
stored role     Ollama message
=============== ==================================================================
user            ``{"role": "user", "content"}``
thinking        ``thinking`` of the assistant message it starts
assistant       ``content`` of the current assistant message
tool-call       one ``tool_calls`` entry of the current assistant message:
                ``{"function": {"name", "arguments"}}`` (the model-facing name,
                the arguments parsed from ``toolInput``)
tool-result     ``{"role": "tool", "content", "tool_name"}``
system          nothing: corral's own notes are not part of the conversation
=============== ==================================================================

One model response is stored as at most one thinking, one assistant text and
its tool calls, in that order (see ``turn.py``); they are put back together as
one assistant message. A thinking after anything, or a text after a text or a
tool call, starts the next assistant message; a user message or a tool result
ends the current one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from corral.supervisor.providers.ollama.tools import model_name

__all__ = ["build_messages", "user_message"]


def user_message(text: str) -> dict[str, Any]:
    """The Ollama message of a prompt."""
    return {"role": "user", "content": text}


def build_messages(
    stored: Iterable[Mapping[str, Any]],
    *,
    system_prompt: str | None = None,
    prompt: str | None = None,
) -> list[dict[str, Any]]:
    """The Ollama conversation for ``stored`` AgentMessages (in seqId order).

    ``system_prompt`` becomes the first message; ``prompt``, when given, is
    appended as the last user message (leave it out when ``stored`` already
    holds it).
    """
    out: list[dict[str, Any]] = []
    if system_prompt:
        out.append({"role": "system", "content": system_prompt})
    current: dict[str, Any] | None = None

    def flush() -> None:
        nonlocal current
        if current is not None:
            out.append(current)
            current = None

    def assistant() -> dict[str, Any]:
        nonlocal current
        if current is None:
            current = {"role": "assistant", "content": ""}
        return current

    for message in stored:
        role = message.get("role")
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        if role == "user":
            flush()
            out.append(user_message(text))
        elif role == "thinking":
            if current is not None:
                flush()
            assistant()["thinking"] = text
        elif role == "assistant":
            if current is not None and (current["content"] or current.get("tool_calls")):
                flush()
            assistant()["content"] = text
        elif role == "tool-call":
            assistant().setdefault("tool_calls", []).append(_tool_call(message))
        elif role == "tool-result":
            flush()
            result: dict[str, Any] = {"role": "tool", "content": text}
            name = message.get("toolName")
            if isinstance(name, str) and name:
                result["tool_name"] = model_name(name)
            out.append(result)
        # system notes (and roles this version does not know) are not sent
    flush()
    if prompt is not None:
        out.append(user_message(prompt))
    return out


def _tool_call(message: Mapping[str, Any]) -> dict[str, Any]:
    name = message.get("toolName")
    arguments: dict[str, Any] = {}
    raw = message.get("toolInput")
    if isinstance(raw, str) and raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            arguments = parsed
    return {
        "function": {
            "name": model_name(name) if isinstance(name, str) and name else "unknown",
            "arguments": arguments,
        }
    }

"""Codex tool items as corral tool calls and results.

Owns how each tool-like ``ThreadItem`` of the app-server (``commandExecution``,
``fileChange``, ``mcpToolCall``, ``dynamicToolCall``, ``collabAgentToolCall``,
``webSearch``, ``imageView``) becomes ``tool_call`` values (tool name, input,
tool id) and, once the item completed, its ``tool_result`` values. The
mapping table is in ``items.py``; this module holds the shapes.

Tool ids are the item id, except for a ``fileChange`` with several changes:
one call per change, ids ``<item id>#<index>``.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from typing import Any

from corral.actors.normalized import Normalized
from corral.supervisor.providers.values import as_dict, as_list, as_str

__all__ = ["tool_calls", "tool_results", "unwrap_command"]

_SHELLS = frozenset({"bash", "sh", "zsh", "dash"})
_SHELL_FLAGS = frozenset({"-c", "-lc", "-cl"})


def unwrap_command(command: str) -> str:
    """The script inside ``/bin/bash -lc '…'`` (or ``sh -c``); else ``command`` as is."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    if len(argv) == 3 and os.path.basename(argv[0]) in _SHELLS and argv[1] in _SHELL_FLAGS:
        return argv[2]
    return command


def _file_call(item_id: str, index: int, count: int, change: Mapping[str, Any]) -> Normalized:
    path = as_str(change.get("path")) or ""
    diff = as_str(change.get("diff")) or ""
    kind = as_dict(change.get("kind"))
    change_type = as_str(kind.get("type")) or ""
    tool_id = item_id if count == 1 else f"{item_id}#{index}"
    if change_type == "add":
        return Normalized(
            kind="tool_call",
            tool_name="Write",
            tool_id=tool_id,
            tool_input={"file_path": path, "content": diff},
        )
    if change_type == "delete":
        return Normalized(
            kind="tool_call", tool_name="Delete", tool_id=tool_id, tool_input={"file_path": path}
        )
    tool_input: dict[str, Any] = {"file_path": path, "diff": diff}
    move = as_str(kind.get("move_path"))
    if move:
        tool_input["new_path"] = move
    return Normalized(kind="tool_call", tool_name="Edit", tool_id=tool_id, tool_input=tool_input)


def tool_calls(item_id: str, kind: str, item: Mapping[str, Any]) -> list[Normalized] | None:
    """The tool_call values for a tool item, or None when ``kind`` is not a tool."""
    if kind == "commandExecution":
        command = unwrap_command(as_str(item.get("command")) or "")
        return [
            Normalized(
                kind="tool_call", tool_name="Bash", tool_id=item_id, tool_input={"command": command}
            )
        ]
    if kind == "fileChange":
        changes = [as_dict(c) for c in as_list(item.get("changes"))]
        return [_file_call(item_id, i, len(changes), c) for i, c in enumerate(changes)]
    if kind == "mcpToolCall":
        server = as_str(item.get("server")) or "mcp"
        tool = as_str(item.get("tool")) or "tool"
        return [
            Normalized(
                kind="tool_call",
                tool_name=f"mcp__{server}__{tool}",
                tool_id=item_id,
                tool_input=_arguments(item.get("arguments")),
            )
        ]
    if kind == "dynamicToolCall":
        tool = as_str(item.get("tool")) or "tool"
        namespace = as_str(item.get("namespace"))
        return [
            Normalized(
                kind="tool_call",
                tool_name=f"{namespace}.{tool}" if namespace else tool,
                tool_id=item_id,
                tool_input=_arguments(item.get("arguments")),
            )
        ]
    if kind == "collabAgentToolCall":
        tool_input = {k: item.get(k) for k in ("tool", "prompt", "model") if item.get(k)}
        return [
            Normalized(kind="tool_call", tool_name="Agent", tool_id=item_id, tool_input=tool_input)
        ]
    if kind == "webSearch":
        return [
            Normalized(
                kind="tool_call",
                tool_name="WebSearch",
                tool_id=item_id,
                tool_input={"query": as_str(item.get("query")) or ""},
            )
        ]
    if kind == "imageView":
        return [
            Normalized(
                kind="tool_call",
                tool_name="ViewImage",
                tool_id=item_id,
                tool_input={"path": as_str(item.get("path")) or ""},
            )
        ]
    return None


def _arguments(value: object) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {"arguments": value}
        return parsed if isinstance(parsed, dict) else {"arguments": parsed}
    return {} if value is None else {"arguments": value}


def _blocks_text(blocks: object) -> str:
    parts = []
    for block in as_list(blocks):
        block = as_dict(block)
        text = as_str(block.get("text"))
        if text is not None:
            parts.append(text)
    return "\n".join(parts)


def tool_results(
    kind: str, item: Mapping[str, Any], tool_ids: list[str], streamed: str
) -> list[Normalized]:
    status = as_str(item.get("status")) or "completed"
    failed = status in ("failed", "declined")
    if kind == "commandExecution":
        output = as_str(item.get("aggregatedOutput"))
        text = output if output is not None else streamed
        if status == "declined":
            text = "Declined: the command was not run"
        else:
            exit_code = item.get("exitCode")
            if isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code != 0:
                text = (
                    f"{text.rstrip()}\nExit code {exit_code}"
                    if text.strip()
                    else (f"Exit code {exit_code}")
                )
        return [Normalized(kind="tool_result", text=text, tool_id=tool_ids[0], is_error=failed)]
    if kind == "fileChange":
        changes = [as_dict(c) for c in as_list(item.get("changes"))]
        results = []
        for tool_id, change in zip(tool_ids, changes, strict=False):
            path = as_str(change.get("path")) or "?"
            verb = {"add": "Created", "delete": "Deleted"}.get(
                as_str(as_dict(change.get("kind")).get("type")) or "", "Updated"
            )
            text = {
                "declined": f"Declined: {path} was not changed",
                "failed": f"Failed to change {path}",
            }.get(status, f"{verb} {path}")
            results.append(
                Normalized(kind="tool_result", text=text, tool_id=tool_id, is_error=failed)
            )
        return results
    if kind == "mcpToolCall":
        error = as_dict(item.get("error"))
        result = as_dict(item.get("result"))
        text = as_str(error.get("message")) or _blocks_text(result.get("content"))
        if not text and result.get("structuredContent") is not None:
            text = json.dumps(result.get("structuredContent"))
        return [
            Normalized(
                kind="tool_result", text=text, tool_id=tool_ids[0], is_error=failed or bool(error)
            )
        ]
    if kind == "dynamicToolCall":
        text = _blocks_text(item.get("contentItems"))
        is_error = failed or item.get("success") is False
        return [Normalized(kind="tool_result", text=text, tool_id=tool_ids[0], is_error=is_error)]
    if kind == "webSearch":
        action = as_dict(item.get("action"))
        text = as_str(action.get("url")) or as_str(item.get("query")) or ""
        results = as_list(item.get("results"))
        if results:
            text = f"{text}\n{len(results)} results".strip()
        return [Normalized(kind="tool_result", text=text, tool_id=tool_ids[0])]
    if kind == "imageView":
        return [Normalized(kind="tool_result", text="viewed", tool_id=tool_ids[0])]
    return [Normalized(kind="tool_result", text=status, tool_id=tool_ids[0], is_error=failed)]

"""The mock agent's deterministic content: texts, simulated tool calls, usage blocks.

Only the standard library is imported, to keep the mock's start-up fast.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

_FILLER = (
    " The mock agent simulates a coding session: it reads files, runs commands and"
    " edits code, but nothing is executed and no file is touched."
)


def snippet(prompt: str, limit: int = 60) -> str:
    """ASCII-only, single-line excerpt of the prompt."""
    chars = [c if " " <= c <= "~" else "?" for c in prompt[:limit]]
    text = "".join(chars).strip()
    if len(prompt) > limit:
        text += "..."
    return text or "(empty prompt)"


def sized(head: str, size: int) -> str:
    """``head`` padded with filler or cut to exactly ``size`` ASCII characters."""
    missing = size - len(head)
    if missing <= 0:
        return head[:size]
    return (head + _FILLER * (missing // len(_FILLER) + 1))[:size]


def slug_of(prompt: str) -> str:
    words = [w for w in re.findall(r"[a-z0-9]+", prompt.lower()) if len(w) >= 4]
    slug = "_".join(words[:2]) or "module"
    return slug if slug[0].isalpha() else f"m_{slug}"


def tool_call(index: int, prompt: str, cwd: str) -> tuple[str, dict[str, Any], str, Any]:
    """(name, input, result text, tool_use_result) of the simulated tool call ``index``."""
    extra: dict[str, Any]
    slug = slug_of(prompt)
    src = os.path.join(cwd, "src", f"{slug}.py")
    kind = index % 5
    if kind == 0:
        lines = [
            f'"""{slug} module (simulated content)."""',
            "",
            f"def {slug}() -> str:",
            f'    return "{slug}"',
        ]
        numbered = "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(lines, 1))
        extra = {
            "type": "text",
            "file": {
                "filePath": src,
                "content": "\n".join(lines),
                "numLines": len(lines),
                "startLine": 1,
                "totalLines": len(lines),
            },
        }
        return "Read", {"file_path": src}, numbered, extra
    if kind == 1:
        stdout = f"src\ntests\nREADME.md\npyproject.toml\nsrc/{slug}.py"
        extra = {
            "stdout": stdout,
            "stderr": "",
            "interrupted": False,
            "isImage": False,
            "noOutputExpected": False,
        }
        tool_input = {"command": "ls src tests", "description": "List the project layout"}
        return "Bash", tool_input, stdout, extra
    if kind == 2:
        files = [f"src/{slug}.py", f"tests/test_{slug}.py"]
        text = f"Found {len(files)} files\n" + "\n".join(files)
        extra = {"mode": "files_with_matches", "filenames": files, "numFiles": len(files)}
        tool_input = {
            "pattern": slug,
            "path": os.path.join(cwd, "src"),
            "output_mode": "files_with_matches",
        }
        return "Grep", tool_input, text, extra
    if kind == 3:
        old = f'    return "{slug}"'
        new = f'    return "{slug} (updated)"'
        text = f"The file {src} has been updated successfully."
        extra = {"filePath": src, "oldString": old, "newString": new, "replaceAll": False}
        tool_input = {"file_path": src, "old_string": old, "new_string": new}
        return "Edit", tool_input, text, extra
    files = [f"src/{slug}.py", "src/__init__.py", f"tests/test_{slug}.py"]
    text = "\n".join(os.path.join(cwd, f) for f in files)
    extra = {"filenames": files, "numFiles": len(files), "truncated": False}
    return "Glob", {"pattern": "**/*.py", "path": cwd}, text, extra


def usage(input_tokens: int, output_tokens: int, read: int, created: int) -> dict[str, Any]:
    """A result line's ``usage`` block."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
    }


def model_usage(model: str, usage: dict[str, Any], cost: float) -> dict[str, Any]:
    """A result line's ``modelUsage`` block."""
    return {
        model: {
            "inputTokens": usage["input_tokens"],
            "outputTokens": usage["output_tokens"],
            "cacheReadInputTokens": usage["cache_read_input_tokens"],
            "cacheCreationInputTokens": usage["cache_creation_input_tokens"],
            "webSearchRequests": 0,
            "costUSD": cost,
            "contextWindow": 200000,
            "maxOutputTokens": 32000,
        }
    }


def init_line(
    session_id: str, model: str, cwd: str, mode: str, tools: list[str], version: str
) -> dict[str, Any]:
    """The ``system/init`` line that opens every prompt's answer."""
    return {
        "type": "system",
        "subtype": "init",
        "cwd": cwd,
        "session_id": session_id,
        "tools": tools,
        "mcp_servers": [],
        "model": model,
        "permissionMode": mode,
        "slash_commands": [],
        "apiKeySource": "none",
        "claude_code_version": version,
        "output_style": "default",
        "agents": [],
        "skills": [],
        "plugins": [],
        "uuid": str(uuid.uuid4()),
    }

"""Claude Code's permission prompts: the approval a ``can_use_tool`` becomes, and its answer.

Started with ``--permission-prompt-tool=stdio`` in a mode that can ask, the CLI
prints a ``control_request`` of subtype ``can_use_tool`` when a tool call needs
a person and waits for the ``control_response`` carrying the same
``request_id``. This module owns both ends, as pure functions:
:func:`approval_item` (the ``approval`` value a session turns into an Approval:
summary, normalized input, what ``remember`` would allow) and
:func:`encode_answer` / :func:`encode_error` (the stdin lines). The
:class:`~.dialect.ClaudeDialect` calls them.

Decisions (checked against the real CLI, see ``doc.md``):

* ``remember`` sends the CLI's own ``permission_suggestions`` as
  ``updatedPermissions``, every one with ``destination: "session"`` (the CLI
  suggests ``localSettings``, which writes ``.claude/settings.local.json`` into
  the project: remembering must not outlive the session). Only grants are kept
  (``addRules`` with ``behavior: "allow"``, ``addDirectories``, ``setMode`` other
  than ``bypassPermissions``). A Bash call that asks because it writes a path
  (the request's ``blocked_path``, e.g. ``echo hi > out.txt``) also gets an
  ``Edit`` allow rule for exactly that path: the CLI's suggestions alone do not
  stop the same call from asking again in ``default`` mode.
* A deny never sets ``interrupt``: with it the CLI drops the message (the model
  reads a generic refusal) and ends the turn as ``error_during_execution``;
  without it the model reads the person's message as the tool result and goes
  on. Stopping the turn is ``agent.stop``'s job (its own interrupt).
* ``AskUserQuestion`` arrives the same way; its answer is an allow whose
  ``updatedInput`` holds ``answers`` (question text → chosen label). A client
  may send only ``{"answers": {...}}``: it is merged into the original input,
  which must keep its ``questions``.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.actors.normalized import FILE_PATH_KEY, SHELL_TOOL, Normalized
from corral.actors.ports import ApprovalDecision

__all__ = [
    "QUESTION_TOOL",
    "SUMMARY_CHARS",
    "approval_item",
    "encode_answer",
    "encode_error",
    "remember_permissions",
    "summarize",
]

QUESTION_TOOL = "AskUserQuestion"
"""The tool the agent asks the user a question with (answered through ``answers``)."""

SUMMARY_CHARS = 300
"""An approval's summary is one line of at most this many characters."""

REMEMBER_DESTINATION = "session"
"""Where remembered permissions live: this CLI process only, never a settings file."""

_GRANT_TYPES = frozenset({"addRules", "addDirectories", "setMode"})
_PATH_PATTERN_CHARS = frozenset("*?[]{}!\\#\n\r\t")

#: Input keys whose value best says what a call of another tool is about, in order.
_SUMMARY_KEYS = (
    FILE_PATH_KEY,
    "notebook_path",
    "path",
    "url",
    "pattern",
    "query",
    "skill",
    "description",
    "prompt",
)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


def _question_summary(tool_input: dict[str, Any]) -> str:
    parts: list[str] = []
    questions = tool_input.get("questions")
    for question in questions if isinstance(questions, list) else []:
        if not isinstance(question, dict) or not isinstance(question.get("question"), str):
            continue
        labels = [
            option["label"]
            for option in question.get("options") or []
            if isinstance(option, dict) and isinstance(option.get("label"), str)
        ]
        text = question["question"]
        parts.append(f"{text} [{' | '.join(labels)}]" if labels else text)
    return "Question: " + "; ".join(parts) if parts else "Question"


def summarize(tool_name: str, tool_input: dict[str, Any]) -> str:
    """One line saying what the call would do: a Bash command itself, a question
    with its choices, else ``"<Tool> <path, url, pattern...>"`` or the tool name."""
    if tool_name == SHELL_TOOL and isinstance(tool_input.get("command"), str):
        return _one_line(tool_input["command"])
    if tool_name == QUESTION_TOOL:
        return _one_line(_question_summary(tool_input))
    for key in _SUMMARY_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            return _one_line(f"{tool_name} {value}")
    return _one_line(tool_name)


def _grant(entry: object) -> dict[str, Any] | None:
    """A suggestion kept for ``remember`` (moved to the session), or None."""
    if not isinstance(entry, dict) or entry.get("type") not in _GRANT_TYPES:
        return None
    if entry["type"] == "addRules" and entry.get("behavior") != "allow":
        return None
    if entry["type"] == "setMode" and entry.get("mode") == "bypassPermissions":
        return None
    return {**entry, "destination": REMEMBER_DESTINATION}


def _path_rule(path: object) -> dict[str, Any] | None:
    """An ``Edit`` allow rule for exactly ``path`` (absolute, no pattern characters)."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 4096:
        return None
    if any(char in _PATH_PATTERN_CHARS for char in path):
        return None
    return {
        "type": "addRules",
        "rules": [{"toolName": "Edit", "ruleContent": "/" + path}],
        "behavior": "allow",
        "destination": REMEMBER_DESTINATION,
    }


def remember_permissions(request: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``remember`` sends as ``updatedPermissions`` for a ``can_use_tool``
    request (see the module notes); may be empty."""
    suggested = request.get("permission_suggestions")
    grants = [g for g in map(_grant, suggested if isinstance(suggested, list) else []) if g]
    if request.get("tool_name") == SHELL_TOOL:
        rule = _path_rule(request.get("blocked_path"))
        if rule is not None and rule not in grants:
            grants.append(rule)
    return grants


def approval_item(request_id: str, request: dict[str, Any]) -> Normalized | None:
    """The ``approval`` value for a ``can_use_tool`` request, or None when the
    request is malformed (no tool name, or an input that is not an object)."""
    tool_name = request.get("tool_name")
    tool_input = request.get("input")
    if not isinstance(tool_name, str) or not tool_name or not isinstance(tool_input, dict):
        return None
    tool_id = request.get("tool_use_id")
    return Normalized(
        kind="approval",
        text=summarize(tool_name, tool_input),
        tool_name=tool_name,
        tool_input=tool_input,
        tool_id=tool_id if isinstance(tool_id, str) else None,
        raw={
            "request": {"request_id": request_id, "tool_name": tool_name, "input": tool_input},
            "suggestions": remember_permissions(request),
        },
    )


def _line(response: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "control_response", "response": response}) + b"\n"


def encode_error(request_id: str, message: str) -> bytes:
    """The error ``control_response`` (a request corral does not serve)."""
    return _line({"subtype": "error", "request_id": request_id, "error": message})


def _denial_text(request: dict[str, Any]) -> str:
    tool = request.get("tool_name")
    return f"The user denied permission to use {tool if isinstance(tool, str) else 'this tool'}."


def _allowed_input(request: dict[str, Any], decision: ApprovalDecision) -> dict[str, Any]:
    original = request.get("input")
    original = original if isinstance(original, dict) else {}
    updated = decision.updated_input
    if updated is None:
        return original
    if request.get("tool_name") == QUESTION_TOOL:
        return {**original, **updated}
    return updated


def encode_answer(request: dict[str, Any], decision: ApprovalDecision) -> list[bytes]:
    """The ``control_response`` answering the prompt ``request`` (an approval's
    ``raw["request"]``); empty when it names no request id."""
    request_id = request.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        return []
    answer: dict[str, Any]
    if decision.allow:
        answer = {"behavior": "allow", "updatedInput": _allowed_input(request, decision)}
        grants = [g for g in map(_grant, decision.suggestions or []) if g]
        if decision.remember and grants:
            answer["updatedPermissions"] = grants
            answer["decisionClassification"] = "user_permanent"
        else:
            answer["decisionClassification"] = "user_temporary"
    else:
        message = decision.message if decision.message else _denial_text(request)
        answer = {"behavior": "deny", "message": message, "decisionClassification": "user_reject"}
    return [_line({"subtype": "success", "request_id": request_id, "response": answer})]

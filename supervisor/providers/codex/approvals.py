"""Codex's approval requests as corral approvals, and the answers to them.

Owns the three app-server server requests that ask a person for permission:

========================================= ============ ===========================
server request                            tool_name    tool_input
========================================= ============ ===========================
``item/commandExecution/requestApproval`` Bash         ``{"command"}`` (``bash -lc``
                                                       unwrapped, as the tool call)
``item/fileChange/requestApproval``       Write, Edit, the item's change, as its tool
                                          Delete       call: ``{"file_path", …}``
                                                       (several changes: the first
                                                       path + ``changes``)
``item/permissions/requestApproval``      Permissions  ``{"permissions", "cwd"}``
                                                       (the profile Codex asks for)
========================================= ============ ===========================

Each becomes one ``approval`` value (:func:`approval_item`): ``tool_id`` is the
request's ``itemId``, ``text`` one line (the command, or ``<Tool> <path>``, or
what is asked for, with Codex's ``reason``), ``raw`` ``{"request": {"id",
"method", "itemId"}, "suggestions": [...]}``. A file-change request carries no
detail: the changes come from the item Codex started just before (looked up by
``itemId`` in the transcript).

The answers (:func:`answer_result`; :func:`cancel_result` for an interrupt),
each the ``result`` its schema wants:

================ ===================== ==============================
decision         command / file change permissions
================ ===================== ==============================
allow            ``accept``            the asked profile, ``turn``
allow + remember ``acceptForSession``  the asked profile, ``session``
deny             ``decline``           ``{}``, ``turn``
an interrupt     ``cancel``            ``{}``, ``turn``
================ ===================== ==============================

``acceptForSession`` lets the identical command (or further changes to the
same files) run without asking for the rest of the app-server's session;
``decline`` lets the turn go on (the model is told the user rejected it),
``cancel`` also interrupts the turn. Codex has no field for a deny message:
``decision.message`` is not sent (the daemon writes it into the transcript).
Nor can it run a changed input: an allow whose ``updated_input`` differs from
the input shown is answered ``decline`` (running the original would do what
the person did not approve) with a ``system`` note saying so. For a
permissions request ``updated_input["permissions"]`` is the profile to grant
(Codex grants a subset of what it asked for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corral.actors.normalized import FILE_PATH_KEY, SHELL_TOOL, Normalized
from corral.actors.ports import ApprovalDecision
from corral.supervisor.providers.codex.items import Transcript
from corral.supervisor.providers.codex.tools import unwrap_command
from corral.supervisor.providers.values import as_dict, as_list, as_str

__all__ = [
    "APPROVAL_METHODS",
    "COMMAND",
    "FILE_CHANGE",
    "PERMISSIONS",
    "PendingApproval",
    "answer_result",
    "approval_item",
    "cancel_result",
]

COMMAND = "item/commandExecution/requestApproval"
FILE_CHANGE = "item/fileChange/requestApproval"
PERMISSIONS = "item/permissions/requestApproval"
APPROVAL_METHODS = frozenset({COMMAND, FILE_CHANGE, PERMISSIONS})

PERMISSIONS_TOOL = "Permissions"
_PROFILE_KEYS = ("fileSystem", "network")
_NO_GRANT: dict[str, Any] = {"permissions": {}, "scope": "turn"}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _with_reason(text: str, reason: str | None) -> str:
    return f"{text} ({_one_line(reason)})" if reason and reason.strip() else text


@dataclass(frozen=True)
class PendingApproval:
    """What the protocol keeps of an approval request until it is answered."""

    request_id: Any
    method: str
    item_id: str | None
    turn_id: str | None
    #: the input shown to the person (an allow with another input cannot run)
    tool_input: dict[str, Any] = field(default_factory=dict)
    #: the permission profile Codex asked for (permissions requests)
    asked: dict[str, Any] = field(default_factory=dict)
    #: whether Codex takes a session-wide accept for it
    session_wide: bool = True


# ---------------------------------------------------------------- requests


def _command(params: dict[str, Any]) -> tuple[str, dict[str, Any], str, bool]:
    command = unwrap_command(as_str(params.get("command")) or "")
    kind = as_str(params.get("kind")) or "command"
    text = _one_line(command) or "a command"
    if kind == "writeStdin":
        text = f"send input to {text}"
    network = as_dict(params.get("networkApprovalContext"))
    host = as_str(network.get("host"))
    if host:
        text = f"{text} [network access to {host}]"
    # a managed checkpoint takes only accept, decline and cancel
    return SHELL_TOOL, {"command": command}, text, kind != "humanCommand"


def _file_change(
    params: dict[str, Any], transcript: Transcript, item_id: str
) -> tuple[str, dict[str, Any], str, bool]:
    calls = transcript.open_calls(item_id)
    grant_root = as_str(params.get("grantRoot"))
    if not calls:
        tool_input: dict[str, Any] = {FILE_PATH_KEY: grant_root} if grant_root else {}
        text = f"Edit files under {grant_root}" if grant_root else "Edit files"
        return "Edit", tool_input, text, True
    changes = [(c.tool_name or "Edit", dict(c.tool_input or {})) for c in calls]
    shown = ", ".join(f"{name} {args.get(FILE_PATH_KEY, '?')}" for name, args in changes)
    names = {name for name, _args in changes}
    if len(changes) == 1:
        tool_name, tool_input = changes[0]
    else:
        tool_name = names.pop() if len(names) == 1 else "Edit"
        tool_input = {
            FILE_PATH_KEY: changes[0][1].get(FILE_PATH_KEY, ""),
            "changes": [{"tool": name, **args} for name, args in changes],
        }
    if grant_root:
        tool_input["grant_root"] = grant_root
        shown = f"{shown} [writes under {grant_root}]"
    return tool_name, tool_input, _one_line(shown), True


def _describe_profile(profile: dict[str, Any]) -> str:
    parts: list[str] = []
    files = as_dict(profile.get("fileSystem"))
    for access in ("write", "read"):
        paths = [p for p in as_list(files.get(access)) if isinstance(p, str)]
        if paths:
            parts.append(f"{access} {', '.join(paths)}")
    if not any(as_list(files.get(a)) for a in ("write", "read")):
        entries = [as_dict(e) for e in as_list(files.get("entries"))]
        for entry in entries:
            path = as_str(as_dict(entry.get("path")).get("path"))
            if path:
                parts.append(f"{as_str(entry.get('access')) or 'access'} {path}")
    if as_dict(profile.get("network")).get("enabled") is True:
        parts.append("network access")
    return "; ".join(parts)


def _permissions(params: dict[str, Any]) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    asked = {k: v for k, v in as_dict(params.get("permissions")).items() if k in _PROFILE_KEYS}
    tool_input: dict[str, Any] = {"permissions": asked}
    cwd = as_str(params.get("cwd"))
    if cwd:
        tool_input["cwd"] = cwd
    described = _describe_profile(asked)
    text = f"grant {described}" if described else "grant extra permissions"
    return PERMISSIONS_TOOL, tool_input, _one_line(text), asked


def _suggestions(method: str, session_wide: bool) -> list[dict[str, Any]]:
    """What ``remember`` sends, for a client to show."""
    if method == PERMISSIONS:
        return [{"scope": "session", "allows": "these permissions for the rest of the session"}]
    if not session_wide:
        return []
    allows = (
        "this exact command for the rest of the session"
        if method == COMMAND
        else "further changes to these files for the rest of the session"
    )
    return [{"decision": "acceptForSession", "allows": allows}]


def approval_item(
    request_id: Any, method: str, params: dict[str, Any], transcript: Transcript
) -> tuple[Normalized, PendingApproval]:
    """The ``approval`` value for one approval request, and what to keep of it."""
    item_id = as_str(params.get("itemId"))
    reason = as_str(params.get("reason"))
    asked: dict[str, Any] = {}
    session_wide = True
    if method == COMMAND:
        tool_name, tool_input, text, session_wide = _command(params)
    elif method == FILE_CHANGE:
        tool_name, tool_input, text, session_wide = _file_change(params, transcript, item_id or "")
    else:
        tool_name, tool_input, text, asked = _permissions(params)
    raw: dict[str, Any] = {"request": {"id": request_id, "method": method, "itemId": item_id}}
    suggestions = _suggestions(method, session_wide)
    if suggestions:
        raw["suggestions"] = suggestions
    item = Normalized(
        kind="approval",
        tool_name=tool_name,
        tool_input=tool_input,
        tool_id=item_id,
        text=_with_reason(text, reason),
        raw=raw,
    )
    pending = PendingApproval(
        request_id=request_id,
        method=method,
        item_id=item_id,
        turn_id=as_str(params.get("turnId")),
        tool_input=dict(tool_input),
        asked=asked,
        session_wide=session_wide,
    )
    return item, pending


# ---------------------------------------------------------------- answers


def _granted(pending: PendingApproval, decision: ApprovalDecision) -> dict[str, Any]:
    profile = pending.asked
    if decision.updated_input is not None and "permissions" in decision.updated_input:
        chosen = as_dict(decision.updated_input.get("permissions"))
        profile = {k: v for k, v in chosen.items() if k in _PROFILE_KEYS}
    return {k: v for k, v in profile.items() if v is not None}


def answer_result(
    pending: PendingApproval, decision: ApprovalDecision
) -> tuple[dict[str, Any], str | None]:
    """(the response ``result``, a note for the transcript or None)."""
    if pending.method == PERMISSIONS:
        if not decision.allow:
            return dict(_NO_GRANT), None
        scope = "session" if decision.remember else "turn"
        return {"permissions": _granted(pending, decision), "scope": scope}, None
    if not decision.allow:
        return {"decision": "decline"}, None
    if decision.updated_input is not None and decision.updated_input != pending.tool_input:
        what = "command" if pending.method == COMMAND else "file change"
        note = (
            f"Codex cannot run a changed {what}: the allow came with another input, "
            "so corral declined it."
        )
        return {"decision": "decline"}, note
    if decision.remember and pending.session_wide:
        return {"decision": "acceptForSession"}, None
    return {"decision": "accept"}, None


def cancel_result(pending: PendingApproval) -> dict[str, Any]:
    """The answer that denies the request and ends the turn (before an interrupt)."""
    if pending.method == PERMISSIONS:
        return dict(_NO_GRANT)
    return {"decision": "cancel"}

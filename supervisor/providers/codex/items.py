"""Codex app-server notifications turned into :class:`Normalized` values.

:class:`Transcript` owns the meaning of everything the app-server *notifies*
(the JSON-RPC plumbing, handshake and server requests are ``protocol.py``'s).
The transcript is built from ``item/started`` / ``item/completed``, never from
``turn/completed.items`` (a summary that leaves most items out).

==================== ============================================================
item / notification  normalized
==================== ============================================================
agentMessage         one ``text`` per item, at ``item/completed`` (deltas are
                     only buffered)
reasoning            one ``thinking`` per item: the summary parts (else the raw
                     reasoning content) joined by blank lines
plan                 one ``text`` (a proposed plan is the assistant speaking)
commandExecution     ``tool_call`` Bash ``{"command": …}`` at ``item/started``
                     (``bash -lc '…'`` unwrapped), ONE ``tool_result`` at
                     ``item/completed``: the aggregated output (else the streamed
                     deltas), an ``Exit code N`` line when it is not 0;
                     ``is_error`` when failed or declined
fileChange           one ``tool_call`` per change (Write for add ``{file_path,
                     content}``, Edit for update ``{file_path, diff[, new_path]}``,
                     Delete for delete ``{file_path}``), one result per change
mcpToolCall          ``tool_call`` ``mcp__<server>__<tool>`` + its result
dynamicToolCall      ``tool_call`` named after the tool + its result
collabAgentToolCall  ``tool_call`` Agent + its result
webSearch, imageView ``tool_call`` WebSearch / ViewImage + result, at completion
contextCompaction    ``compaction`` (``thread/compacted`` only when no item did)
turn/plan/updated    ``tool_call`` TodoWrite ``{"todos": [{content, status}]}``
                     and an immediate result (Claude's todo shape)
tokenUsage/updated   ``cost`` (see :meth:`Transcript._usage`)
error willRetry      ``status`` "retrying" (never an error)
error (final)        ``error``; the turn's failure does not repeat it
turn/completed       ``turn_end``: completed → ok; interrupted → is_error,
                     text "interrupted"; failed → is_error, the error message,
                     ``error_info`` = codexErrorInfo (a string, or the key of
                     the object form such as ``responseStreamDisconnected``)
warning …            ``system`` notes; ``deprecationNotice`` a ``status``
anything unknown     ``unknown`` with the notification as ``raw``
==================== ============================================================

Decisions:

* **Unfinished items at a turn's end.** An interrupted turn gets no
  ``item/completed`` for its partial agent message (Codex drops it from the
  model's history) nor for a running command. At ``turn/completed`` every
  item still open is closed exactly once: buffered text or reasoning is emitted
  as it stands (the user sees what was produced before the interrupt, as with
  Claude's partial blocks), and every open tool call gets an ``is_error``
  result ("interrupted"). A late ``item/completed`` for an item closed that
  way (after ``thread/backgroundTerminals/clean``) is ignored, so a tool call
  always has exactly one result. :meth:`Transcript.close_open` does the same
  when the process ends mid-turn.
* **Retried streams** keep the partial message Codex already completed, so a
  failed-then-retried answer can show twice, as Codex's own UI does.
* **Tokens.** Codex counts OpenAI-style: cached input is part of input, and
  reasoning is part of output. A ``cost`` carries ``input_tokens`` = input
  not served from cache (minus cache writes), ``cache_read_tokens`` = cached
  input, ``cache_creation_tokens`` = cache-write input, ``output_tokens`` =
  output with reasoning (billed at the output rate). The counts are the
  growth of the thread's ``total`` since the last update (the first update
  of a process uses ``last``); ``cost_usd`` prices the whole ``total`` and is
  cumulative for the thread. The totals Codex replays after ``thread/resume``
  (for a turn not started by this process) set the baseline and add no
  tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.actors.normalized import Kind, Normalized
from corral.supervisor.providers.codex.pricing import Price, TokenCounts, price_usage
from corral.supervisor.providers.codex.tools import tool_calls, tool_results
from corral.supervisor.providers.values import as_dict, as_list, as_str

__all__ = ["SILENT_NOTIFICATIONS", "Transcript", "error_info"]

log = logging.getLogger("corral.providers.codex")

_CLOSED_MEMORY = 512
_TEXT_ITEMS = frozenset({"agentMessage", "reasoning", "plan"})
_TODO_STATUS = {"pending": "pending", "inProgress": "in_progress", "completed": "completed"}

#: Notifications with nothing for the transcript (state the session does not track).
SILENT_NOTIFICATIONS = frozenset(
    {
        "thread/started",
        "thread/status/changed",
        "thread/readState/changed",
        "thread/archived",
        "thread/unarchived",
        "thread/deleted",
        "thread/closed",
        "thread/name/updated",
        "thread/section/changed",
        "thread/attachment/updated",
        "thread/goal/updated",
        "thread/goal/cleared",
        "thread/prediction/updated",
        "thread/queue/changed",
        "thread/project/updated",
        "thread/environment/connected",
        "thread/environment/disconnected",
        "thread/settings/updated",
        "project/changed",
        "skills/changed",
        "turn/started",
        "turn/diff/updated",
        "turn/moderationMetadata",
        "hook/started",
        "hook/completed",
        "item/autoApprovalReview/started",
        "item/autoApprovalReview/completed",
        "autoApprovalReview/strictReviewRequired",
        "item/commandExecution/terminalInteraction",
        "item/fileChange/outputDelta",
        "item/fileChange/patchUpdated",
        "item/mcpToolCall/progress",
        "serverRequest/resolved",
        "mcpServer/startupStatus/updated",
        "mcpServer/oauthLogin/completed",
        "mcpServer/event/stream/notification",
        "account/updated",
        "account/rateLimits/updated",
        "account/gatewayOAuth/changed",
        "account/login/completed",
        "app/list/updated",
        "remoteControl/status/changed",
        "fs/changed",
        "model/verification",
        "model/safetyBuffering/updated",
        "modelProvider/authRecoveryStarted",
        "modelProvider/authRecoveryCompleted",
        "command/exec/outputDelta",
        "process/outputDelta",
        "process/exited",
        "externalAgentConfig/import/progress",
        "externalAgentConfig/import/completed",
        "fuzzyFileSearch/sessionUpdated",
        "fuzzyFileSearch/sessionCompleted",
        "windows/worldWritableWarning",
        "windowsSandbox/setupCompleted",
    }
)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value


def error_info(value: object) -> str | None:
    """codexErrorInfo as a string: the string form, or the single key of the object form."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        return str(next(iter(value)))
    return None


def _error_text(error: Mapping[str, Any], fallback: str) -> str:
    message = as_str(error.get("message")) or fallback
    details = as_str(error.get("additionalDetails"))
    if details and details not in message:
        return f"{message} ({details})"
    return message


def _tokens(breakdown: Mapping[str, Any]) -> tuple[TokenCounts, int]:
    counts = TokenCounts(
        input=_int(breakdown.get("inputTokens")),
        cached_input=_int(breakdown.get("cachedInputTokens")),
        output=_int(breakdown.get("outputTokens")),
        reasoning_output=_int(breakdown.get("reasoningOutputTokens")),
    )
    return counts, _int(breakdown.get("cacheWriteInputTokens"))


@dataclass
class _Open:
    """An item that started and has not completed yet."""

    kind: str
    parts: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    tool_ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    calls: list[Normalized] = field(default_factory=list)


class Transcript:
    """Stateful translator of one app-server's notifications (one thread).

    The protocol tells it which turns this process started (:meth:`own_turn`)
    and which model prices apply (:attr:`model`); :meth:`notification` returns
    the normalized values for one notification.
    """

    def __init__(self, prices: Mapping[str, Price] | None = None, model: str | None = None) -> None:
        self.model = model
        self._prices = dict(prices or {})
        self._open: dict[str, _Open] = {}
        self._closed: dict[str, None] = {}
        self._turn_errors: set[str] = set()
        self._own_turns: set[str] = set()
        self._baseline: tuple[TokenCounts, int] | None = None
        self._price_noted = False
        self._compacted = False
        self._todo_count = 0

    # ------------------------------------------------------------ public

    def own_turn(self, turn_id: str) -> None:
        """``turn_id`` was started by this process (its usage counts)."""
        if turn_id not in self._own_turns:
            self._own_turns.add(turn_id)
            self._turn_errors.clear()
            self._compacted = False

    def open_paths(self, item_id: str) -> list[str]:
        """The paths of an open fileChange item (for naming an approval request)."""
        found = self._open.get(item_id)
        return list(found.paths) if found is not None else []

    def open_calls(self, item_id: str) -> list[Normalized]:
        """The tool calls of an open tool item (what an approval request is about)."""
        found = self._open.get(item_id)
        return list(found.calls) if found is not None else []

    def notification(self, method: str, params: dict[str, Any]) -> list[Normalized]:
        """The normalized values for one notification (possibly none)."""
        handler = _HANDLERS.get(method)
        if handler is not None:
            return handler(self, params)
        if method in SILENT_NOTIFICATIONS:
            return []
        return [Normalized(kind="unknown", raw={"method": method, "params": params})]

    def close_open(self, reason: str) -> list[Normalized]:
        """Close every open item once: partial texts as they stand, tool calls with
        an ``is_error`` result saying ``reason``."""
        out: list[Normalized] = []
        for item_id, item in list(self._open.items()):
            if item.kind in _TEXT_ITEMS:
                text = _buffered_text(item)
                if text.strip():
                    kind: Kind = "thinking" if item.kind == "reasoning" else "text"
                    out.append(Normalized(kind=kind, text=text))
            else:
                partial = "".join(item.output)
                text = f"{partial.rstrip()}\n{reason}" if partial.strip() else reason
                out.extend(
                    Normalized(kind="tool_result", text=text, tool_id=tool_id, is_error=True)
                    for tool_id in item.tool_ids
                )
            self._forget(item_id)
        return out

    # ------------------------------------------------------------ items

    def _forget(self, item_id: str) -> None:
        self._open.pop(item_id, None)
        self._closed[item_id] = None
        while len(self._closed) > _CLOSED_MEMORY:
            self._closed.pop(next(iter(self._closed)))

    def _item_started(self, params: dict[str, Any]) -> list[Normalized]:
        item = as_dict(params.get("item"))
        item_id = as_str(item.get("id"))
        kind = as_str(item.get("type")) or ""
        if not item_id or item_id in self._open or item_id in self._closed:
            return []
        if kind in _TEXT_ITEMS:
            start = as_str(item.get("text")) or ""
            self._open[item_id] = _Open(kind, parts=[start] if start else [])
            return []
        calls = tool_calls(item_id, kind, item)
        if calls is None:
            return []
        opened = _Open(kind, tool_ids=[c.tool_id or item_id for c in calls], calls=list(calls))
        opened.paths = [
            str((c.tool_input or {}).get("file_path"))
            for c in calls
            if (c.tool_input or {}).get("file_path")
        ]
        self._open[item_id] = opened
        return calls

    def _item_completed(self, params: dict[str, Any]) -> list[Normalized]:
        item = as_dict(params.get("item"))
        item_id = as_str(item.get("id")) or ""
        kind = as_str(item.get("type")) or ""
        if item_id in self._closed:
            return []  # closed at a turn's end; its result was already given
        opened = self._open.get(item_id)
        out: list[Normalized] = []
        if kind == "agentMessage" or kind == "plan":
            text = as_str(item.get("text")) or (_buffered_text(opened) if opened else "")
            if text:
                out.append(Normalized(kind="text", text=text))
        elif kind == "reasoning":
            text = _reasoning_text(item) or (_buffered_text(opened) if opened else "")
            if text.strip():
                out.append(Normalized(kind="thinking", text=text))
        elif kind == "contextCompaction":
            self._compacted = True
            out.append(Normalized(kind="compaction", text="context compacted"))
        elif kind in ("enteredReviewMode", "exitedReviewMode"):
            verb = "Entered" if kind == "enteredReviewMode" else "Exited"
            review = as_str(item.get("review")) or ""
            out.append(Normalized(kind="system", text=f"{verb} review mode: {review}".rstrip(": ")))
        elif kind in (
            "userMessage",
            "hookPrompt",
            "sleep",
            "functionCallOutput",
            "subAgentActivity",
        ):
            pass
        elif kind == "imageGeneration":
            saved = as_str(item.get("savedPath"))
            if saved:
                out.append(Normalized(kind="system", text=f"Generated an image: {saved}"))
        else:
            calls = tool_calls(item_id, kind, item)
            if calls is None:
                self._forget(item_id)
                return [
                    Normalized(kind="unknown", raw={"method": "item/completed", "params": params})
                ]
            if opened is None:
                out.extend(calls)
                tool_ids = [c.tool_id or item_id for c in calls]
            else:
                tool_ids = opened.tool_ids
            streamed = "".join(opened.output) if opened else ""
            out.extend(tool_results(kind, item, tool_ids, streamed))
        if item_id:
            self._forget(item_id)
        return out

    def _delta(self, params: dict[str, Any], output: bool = False) -> list[Normalized]:
        opened = self._open.get(as_str(params.get("itemId")) or "")
        delta = as_str(params.get("delta"))
        if opened is not None and delta:
            target = opened.output if output else opened.parts
            if not target:
                target.append("")
            target[-1] += delta
        return []

    def _summary_part(self, params: dict[str, Any]) -> list[Normalized]:
        opened = self._open.get(as_str(params.get("itemId")) or "")
        if opened is not None and (not opened.parts or opened.parts[-1]):
            opened.parts.append("")
        return []

    # ------------------------------------------------------------ turns

    def _turn_completed(self, params: dict[str, Any]) -> list[Normalized]:
        turn = as_dict(params.get("turn"))
        status = as_str(turn.get("status")) or ""
        reason = {
            "interrupted": "interrupted",
            "failed": "the turn failed before the tool finished",
        }.get(status, "the turn ended before the tool finished")
        out = self.close_open(reason)
        if status == "completed":
            out.append(Normalized(kind="turn_end", is_error=False))
        elif status == "interrupted":
            out.append(Normalized(kind="turn_end", is_error=True, text="interrupted"))
        elif status == "failed":
            error = as_dict(turn.get("error"))
            text = _error_text(error, "the turn failed")
            info = error_info(error.get("codexErrorInfo"))
            if text not in self._turn_errors:
                out.append(Normalized(kind="error", text=text, error_info=info))
            out.append(Normalized(kind="turn_end", is_error=True, text=text, error_info=info))
        else:
            text = f"the turn ended with status {status or 'unknown'}"
            out.append(Normalized(kind="turn_end", is_error=True, text=text))
        self._turn_errors.clear()
        self._compacted = False
        return out

    def _error(self, params: dict[str, Any]) -> list[Normalized]:
        error = as_dict(params.get("error"))
        text = _error_text(error, "Codex reported an error")
        if params.get("willRetry") is True:
            return [Normalized(kind="status", status="retrying", text=text, raw=params)]
        self._turn_errors.add(text)
        return [
            Normalized(kind="error", text=text, error_info=error_info(error.get("codexErrorInfo")))
        ]

    def _plan_updated(self, params: dict[str, Any]) -> list[Normalized]:
        todos = []
        for step in as_list(params.get("plan")):
            step = as_dict(step)
            status = as_str(step.get("status")) or "pending"
            todos.append(
                {
                    "content": as_str(step.get("step")) or "",
                    "status": _TODO_STATUS.get(status, status),
                }
            )
        tool_input: dict[str, Any] = {"todos": todos}
        explanation = as_str(params.get("explanation"))
        if explanation:
            tool_input["explanation"] = explanation
        self._todo_count += 1
        tool_id = f"plan-{as_str(params.get('turnId')) or 'turn'}-{self._todo_count}"
        return [
            Normalized(
                kind="tool_call", tool_name="TodoWrite", tool_input=tool_input, tool_id=tool_id
            ),
            Normalized(kind="tool_result", text="Plan updated", tool_id=tool_id),
        ]

    def _compacted_notice(self, params: dict[str, Any]) -> list[Normalized]:
        if self._compacted:
            return []
        self._compacted = True
        return [Normalized(kind="compaction", text="context compacted")]

    # ------------------------------------------------------------ usage

    def _usage(self, params: dict[str, Any]) -> list[Normalized]:
        usage = as_dict(params.get("tokenUsage"))
        total, total_writes = _tokens(as_dict(usage.get("total")))
        last, last_writes = _tokens(as_dict(usage.get("last")))
        window = usage.get("modelContextWindow")
        replay = as_str(params.get("turnId")) not in self._own_turns
        baseline = self._baseline
        self._baseline = (total, total_writes)
        if replay:
            grown, writes = TokenCounts(), 0
        elif (
            baseline is not None
            and total.input >= baseline[0].input
            and (total.output >= baseline[0].output)
        ):
            grown = TokenCounts(
                input=total.input - baseline[0].input,
                cached_input=max(0, total.cached_input - baseline[0].cached_input),
                output=total.output - baseline[0].output,
                reasoning_output=max(0, total.reasoning_output - baseline[0].reasoning_output),
            )
            writes = max(0, total_writes - baseline[1])
        else:
            grown, writes = last, last_writes
        cost, note = price_usage(self.model, total, self._prices)
        cached = min(grown.cached_input, grown.input)
        writes = min(writes, grown.input - cached)
        out = [
            Normalized(
                kind="cost",
                cost_usd=cost,
                cost_cumulative=True,
                input_tokens=grown.input - cached - writes,
                cache_read_tokens=cached,
                cache_creation_tokens=writes,
                output_tokens=grown.output,
                context_window=window if isinstance(window, int) and window > 0 else None,
            )
        ]
        if note is not None and not self._price_noted:
            self._price_noted = True
            out.append(Normalized(kind="system", text=note))
        return out

    # ------------------------------------------------------------ notes

    def _note(self, params: dict[str, Any]) -> list[Normalized]:
        text = as_str(params.get("message")) or as_str(params.get("summary")) or ""
        details = as_str(params.get("details"))
        if details:
            text = f"{text}: {details}" if text else details
        return [Normalized(kind="system", text=f"Codex: {text}")] if text else []

    def _deprecation(self, params: dict[str, Any]) -> list[Normalized]:
        summary = as_str(params.get("summary")) or "deprecation notice"
        log.info("codex deprecation notice: %s", summary)
        return [Normalized(kind="status", status="deprecation", text=summary, raw=params)]

    def _rerouted(self, params: dict[str, Any]) -> list[Normalized]:
        to_model = as_str(params.get("toModel"))
        from_model = as_str(params.get("fromModel")) or "?"
        if to_model:
            self.model = to_model
        reason = as_str(params.get("reason"))
        text = f"Codex rerouted the model from {from_model} to {to_model or '?'}"
        return [Normalized(kind="system", text=f"{text} ({reason})" if reason else text)]


def _buffered_text(item: _Open) -> str:
    """What the deltas of a text item said so far (reasoning: summary parts, else
    the raw reasoning content)."""
    if item.kind != "reasoning":
        return "".join(item.parts)
    return "\n\n".join(p for p in item.parts if p) or "".join(item.output)


def _reasoning_text(item: Mapping[str, Any]) -> str:
    summary = [s for s in as_list(item.get("summary")) if isinstance(s, str) and s]
    if summary:
        return "\n\n".join(summary)
    content = [s for s in as_list(item.get("content")) if isinstance(s, str) and s]
    return "\n\n".join(content)


_HANDLERS: dict[str, Callable[[Transcript, dict[str, Any]], list[Normalized]]] = {
    "item/started": Transcript._item_started,
    "item/completed": Transcript._item_completed,
    "item/agentMessage/delta": Transcript._delta,
    "item/plan/delta": Transcript._delta,
    "item/reasoning/summaryTextDelta": Transcript._delta,
    "item/reasoning/textDelta": lambda self, params: self._delta(params, output=True),
    "item/reasoning/summaryPartAdded": Transcript._summary_part,
    "item/commandExecution/outputDelta": lambda self, params: self._delta(params, output=True),
    "turn/completed": Transcript._turn_completed,
    "turn/plan/updated": Transcript._plan_updated,
    "thread/tokenUsage/updated": Transcript._usage,
    "thread/compacted": Transcript._compacted_notice,
    "error": Transcript._error,
    "warning": Transcript._note,
    "guardianWarning": Transcript._note,
    "configWarning": Transcript._note,
    "deprecationNotice": Transcript._deprecation,
    "model/rerouted": Transcript._rerouted,
}

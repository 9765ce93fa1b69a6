"""One ollama turn: streamed chats, merged output, the tool loop and how it ends.

:func:`run_turn` answers one prompt. Each model response is one streamed
``chat`` request; the model's chunks become Normalized values for the session:

* **Progress while streaming**: every ``progress_interval`` seconds (and only
  when something new came) one batch of ``delta`` values carries what was
  added since the last batch: ``status`` the role (``thinking`` |
  ``assistant``), ``text`` the new characters, ``raw`` ``{"type":
  "ollama.delta", "role": ..., "offset": characters before this piece,
  "response": n}``. They are not stored: the session publishes them as
  ``agent.delta`` events, a preview that keeps a long answer from looking
  stalled.
* **One message per response**: when the response ends, its whole thinking
  becomes ONE ``thinking`` value and its whole content ONE ``text`` value
  (each only when non-empty), followed by its tool calls (``tool_call``, with
  an id corral makes, names as ``tools.DISPLAY_NAMES`` shows them) and one
  ``cost`` value (``cost_usd`` 0, not cumulative; ``input_tokens`` =
  ``prompt_eval_count``, ``output_tokens`` = ``eval_count``; ``raw`` holds
  the server's timings in ms and the tokens per second). So the store keeps
  exactly one thinking and one text message per response, however many chunks
  it took; the partials are a preview that these replace.
* **Tools**: each call runs in turn (``tool_result`` after each) and the
  results go back to the model in the next request, until it answers without
  tool calls or ``max_rounds`` responses were made.
* **The end**: the last batch holds ``turn_end``: plain on success;
  ``is_error`` with ``text`` and ``error_info`` otherwise:

  ======================== ============================================= ===================
  case                     text                                          error_info
  ======================== ============================================= ===================
  stop (``cancel`` set)    ``interrupted``                               ``cancelled``
  model missing (404)      ``model 'x' is not available on the ollama    ``model_not_found``
                           server at H: run `ollama pull x```
  server unreachable       ``the ollama server at H is not reachable``   ``network``
  server busy (503)        ``ollama: <error> (server busy)``             ``overloaded``
  other server error       ``ollama: <error> (HTTP n)``                  None
  ``max_rounds`` reached   ``stopped after N model responses ...``       ``max_turns``
  ======================== ============================================= ===================

  An error is also shown once as an ``error`` value (a transcript line).

A stop ends the turn within a second: the stream is read on a helper thread
and the turn thread waits for its chunks at most ``CANCEL_POLL_S`` at a time;
on a stop it cuts the connection (:class:`client.StreamGuard`), which also
tells the server to stop generating. What the interrupted response had
produced is kept (one thinking, one text), a running command is killed, and
every tool call shown gets a result.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import ollama

from corral.actors.normalized import Normalized
from corral.protocol.errors import ProviderUnavailable
from corral.supervisor.providers.ollama.client import (
    ModelInfo,
    ModelNotFound,
    OllamaClient,
    StreamGuard,
    pull_hint,
    unreachable,
)
from corral.supervisor.providers.ollama.tools import ToolBox, display_name

__all__ = [
    "CANCEL_POLL_S",
    "DEFAULT_MAX_ROUNDS",
    "PROGRESS_INTERVAL_S",
    "Emit",
    "TurnResult",
    "choose_think",
    "init_item",
    "run_turn",
]

log = logging.getLogger("corral.providers.ollama")

Emit = Callable[[list[Normalized]], None]

PROGRESS_INTERVAL_S = 0.25
"""At most one batch of partial progress per this many seconds."""

CANCEL_POLL_S = 0.1
"""The longest the turn thread waits for a chunk before it looks at ``cancel``."""

DEFAULT_MAX_ROUNDS = 25
"""Model responses per turn (one per tool round) when the session sets no maxTurns."""

READER_JOIN_S = 0.5

Outcome = Literal["done", "error", "interrupted", "max_rounds"]


@dataclass
class TurnResult:
    """How a turn went, and the Ollama messages it added to the conversation."""

    outcome: Outcome
    messages: list[dict[str, Any]] = field(default_factory=list)
    """Assistant and tool messages to append after the prompt (kept on errors too:
    what was shown is what the model said)."""
    error: str | None = None
    rounds: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def init_item(model: str, cwd: str | None = None) -> Normalized:
    """The ``init`` value a session shows when it starts ("Session started (model: X)")."""
    return Normalized("init", model=model, cwd=cwd)


def choose_think(requested: bool | str | None, info: ModelInfo | None) -> bool | str | None:
    """The ``think`` to send: None (leave it out) unless the model can think.

    ``requested`` None means "on when the model can think"; False turns a
    thinking model's thinking off. With unknown capabilities only an explicit
    request is sent.
    """
    can = info.thinking if info is not None else None
    if can is False:
        return None
    if requested is None:
        return True if can else None
    return requested


class _Interrupted(Exception):
    pass


@dataclass
class _Response:
    thinking: str = ""
    content: str = ""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    done: ollama.ChatResponse | None = None
    failure: BaseException | None = None
    interrupted: bool = False


_END = object()


@dataclass
class _Failed:
    exc: BaseException


def run_turn(
    client: OllamaClient,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    cancel: threading.Event,
    emit: Emit,
    think: bool | str | None = None,
    tools: ToolBox | None = None,
    options: Mapping[str, Any] | None = None,
    keep_alive: float | str | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    progress_interval: float = PROGRESS_INTERVAL_S,
) -> TurnResult:
    """Answer the conversation ``messages`` (ending with the prompt); see the module doc.

    ``think`` is the requested thinking (:func:`choose_think` applies the
    model's capabilities); ``tools`` is offered only when the model can call
    tools (a ``system`` note says once per client when it cannot). Never
    raises for server trouble: every turn ends with exactly one ``turn_end``.
    """
    turn = _Turn(client, model, cancel, emit, options, keep_alive, progress_interval)
    return turn.run([dict(m) for m in messages], think, tools, max(1, max_rounds))


class _Turn:
    def __init__(
        self,
        client: OllamaClient,
        model: str,
        cancel: threading.Event,
        emit: Emit,
        options: Mapping[str, Any] | None,
        keep_alive: float | str | None,
        progress_interval: float,
    ) -> None:
        self.client = client
        self.model = model
        self.cancel = cancel
        self.emit = emit
        self.options = dict(options) if options else None
        self.keep_alive = keep_alive
        self.progress_interval = progress_interval
        self.result = TurnResult("done")

    # ------------------------------------------------------------ the loop

    def run(
        self,
        conversation: list[dict[str, Any]],
        think: bool | str | None,
        tools: ToolBox | None,
        max_rounds: int,
    ) -> TurnResult:
        if self.cancel.is_set():
            return self._end([], "interrupted")
        try:
            info = self._describe()
        except _Interrupted:
            return self._end([], "interrupted")
        except ModelNotFound as exc:
            return self._end([], "error", str(exc), "model_not_found")
        except ProviderUnavailable as exc:
            return self._end([], "error", exc.message, "network")
        send_think = choose_think(think, info)
        specs, notes = self._tool_specs(tools, info)
        while True:
            self.result.rounds += 1
            response = self._respond(conversation, send_think, specs)
            items = notes + self._response_items(response)
            notes = []
            self._remember(conversation, response)
            if response.interrupted:
                return self._end(items, "interrupted")
            if response.failure is not None:
                text, info_code = self._explain(response.failure)
                return self._end(items, "error", text, info_code)
            if not response.calls:
                return self._end(items, "done")
            self.emit(items)
            if not self._run_tools(conversation, response, tools if specs else None):
                return self._end([], "interrupted")
            if self.result.rounds >= max_rounds:
                text = (
                    f"stopped after {self.result.rounds} model responses "
                    f"(the turn's limit, maxTurns); send a prompt to continue"
                )
                return self._end([], "max_rounds", text, "max_turns")

    def _tool_specs(
        self, tools: ToolBox | None, info: ModelInfo
    ) -> tuple[list[dict[str, Any]] | None, list[Normalized]]:
        if tools is None:
            return None, []
        if info.tools is False:
            notes = []
            if self.client.first_time(f"no-tools:{self.model}"):
                notes.append(
                    Normalized(
                        "system",
                        text=f"{self.model} cannot call tools; it answers without them",
                    )
                )
            return None, notes
        return tools.specs(), []

    def _remember(self, conversation: list[dict[str, Any]], response: _Response) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": response.content}
        if response.thinking:
            message["thinking"] = response.thinking
        if response.calls:
            message["tool_calls"] = [
                {"function": {"name": name, "arguments": args}} for _, name, args in response.calls
            ]
        if response.content or response.thinking or response.calls:
            conversation.append(message)
            self.result.messages.append(message)

    def _run_tools(
        self, conversation: list[dict[str, Any]], response: _Response, tools: ToolBox | None
    ) -> bool:
        """Run the response's calls; False when a stop came (every call still gets a result)."""
        interrupted = False
        for call_id, name, args in response.calls:
            if interrupted or self.cancel.is_set():
                interrupted = True
                text, is_error = "not run: interrupted", True
            elif tools is None:
                text, is_error = "tools are not enabled for this session", True
            else:
                outcome = tools.run(name, args, self.cancel)
                text, is_error = outcome.text, outcome.is_error
                interrupted = self.cancel.is_set()
            self.emit(
                [
                    Normalized(
                        "tool_result",
                        text=text,
                        tool_id=call_id,
                        tool_name=display_name(name),
                        is_error=is_error,
                    )
                ]
            )
            message = {"role": "tool", "content": text, "tool_name": name}
            conversation.append(message)
            self.result.messages.append(message)
        return not interrupted

    def _end(
        self,
        items: list[Normalized],
        outcome: Outcome,
        text: str = "",
        error_info: str | None = None,
    ) -> TurnResult:
        self.result.outcome = outcome
        if outcome == "interrupted":
            text, error_info = "interrupted", "cancelled"
        if outcome == "done":
            items.append(Normalized("turn_end"))
        else:
            self.result.error = text
            if outcome != "interrupted":
                items.append(Normalized("error", text=text))
            items.append(Normalized("turn_end", is_error=True, text=text, error_info=error_info))
        self.emit(items)
        return self.result

    def _explain(self, exc: BaseException) -> tuple[str, str | None]:
        host = self.client.host
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404 or (
                "not found" in str(exc.error).lower() and "pull" in str(exc.error).lower()
            ):
                return pull_hint(self.model, host), "model_not_found"
            if exc.status_code == 503:
                return f"ollama: {exc.error} (server busy)", "overloaded"
            status = f" (HTTP {exc.status_code})" if exc.status_code > 0 else ""
            return f"ollama: {exc.error}{status}", None
        if isinstance(exc, ConnectionError | httpx.ConnectError | httpx.ConnectTimeout):
            return unreachable(host, exc), "network"
        if isinstance(exc, httpx.TimeoutException):
            return f"the ollama server at {host} sent nothing for too long", "network"
        if isinstance(exc, httpx.HTTPError | OSError):
            return f"the connection to the ollama server at {host} failed: {exc}", "network"
        return f"ollama: unexpected answer: {type(exc).__name__}: {exc}", None

    # ------------------------------------------------------------ one response

    def _respond(
        self,
        conversation: list[dict[str, Any]],
        think: bool | str | None,
        specs: list[dict[str, Any]] | None,
    ) -> _Response:
        response = _Response()
        index = self.result.rounds
        sent = {"thinking": 0, "assistant": 0}
        last_flush = time.monotonic()
        chunks = self._chunks(
            model=self.model,
            messages=conversation,
            tools=specs,
            think=think,
            options=self.options,
            keep_alive=self.keep_alive,
        )
        try:
            for chunk in chunks:
                if chunk is not None:
                    self._take(response, chunk)
                now = time.monotonic()
                if now - last_flush >= self.progress_interval:
                    partial = _partials(response, sent, index)
                    if partial:
                        self.emit(partial)
                    last_flush = now
        except _Interrupted:
            response.interrupted = True
        except Exception as exc:
            if self.cancel.is_set():
                response.interrupted = True
            else:
                response.failure = exc
        finally:
            chunks.close()
        return response

    def _take(self, response: _Response, chunk: ollama.ChatResponse) -> None:
        message = chunk.message
        if message.thinking:
            response.thinking += message.thinking
        if message.content:
            response.content += message.content
        for call in message.tool_calls or ():
            arguments = call.function.arguments
            args = dict(arguments) if isinstance(arguments, Mapping) else {}
            response.calls.append((f"call_{uuid.uuid4().hex[:24]}", call.function.name, args))
        if chunk.done:
            response.done = chunk

    def _chunks(self, **request: Any) -> Generator[ollama.ChatResponse | None, None, None]:
        """The response's chunks (None when nothing came for CANCEL_POLL_S)."""
        client = self.client

        def produce(put: Callable[[object], None], guard: StreamGuard) -> None:
            for part in client.chat(stream=True, **request):
                put(part)
                if guard.is_cut:
                    break

        for item in self._background(produce):
            assert item is None or isinstance(item, ollama.ChatResponse)
            yield item

    def _describe(self) -> ModelInfo:
        """The model's capabilities (asked once per client), as a stop can cut it."""
        client, model = self.client, self.model

        def produce(put: Callable[[object], None], _guard: StreamGuard) -> None:
            put(client.describe(model))

        items = self._background(produce)
        try:
            for item in items:
                if isinstance(item, ModelInfo):
                    return item
        finally:
            items.close()
        raise RuntimeError("no model information")  # pragma: no cover - produce puts one

    def _background(
        self, produce: Callable[[Callable[[object], None], StreamGuard], None]
    ) -> Generator[object | None, None, None]:
        """What ``produce`` puts, made on a helper thread whose connections a stop
        cuts. Yields None when nothing came for CANCEL_POLL_S; re-raises what
        ``produce`` raised; raises _Interrupted once ``cancel`` is set."""
        handoff: queue.SimpleQueue[object] = queue.SimpleQueue()
        guard = StreamGuard()
        client = self.client

        def work() -> None:
            try:
                with client.guarded(guard):
                    produce(handoff.put, guard)
            except BaseException as exc:
                handoff.put(_Failed(exc))
            else:
                handoff.put(_END)

        helper = threading.Thread(target=work, name="ollama-request", daemon=True)
        helper.start()
        try:
            while True:
                if self.cancel.is_set():
                    raise _Interrupted
                try:
                    item = handoff.get(timeout=CANCEL_POLL_S)
                except queue.Empty:
                    yield None
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            guard.cut()
            helper.join(READER_JOIN_S)

    def _response_items(self, response: _Response) -> list[Normalized]:
        items: list[Normalized] = []
        if response.thinking:
            items.append(Normalized("thinking", text=response.thinking))
        if response.content:
            items.append(Normalized("text", text=response.content))
        for call_id, name, args in response.calls:
            items.append(
                Normalized(
                    "tool_call", tool_name=display_name(name), tool_input=args, tool_id=call_id
                )
            )
        if response.done is not None:
            items.append(self._cost(response.done))
        return items

    def _cost(self, done: ollama.ChatResponse) -> Normalized:
        input_tokens = done.prompt_eval_count or 0
        output_tokens = done.eval_count or 0
        self.result.input_tokens += input_tokens
        self.result.output_tokens += output_tokens
        timing: dict[str, Any] = {"type": "ollama.usage", "done_reason": done.done_reason}
        for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            value = getattr(done, key)
            if isinstance(value, int):
                timing[f"{key}_ms"] = round(value / 1e6, 3)
        if done.eval_duration and output_tokens:
            timing["tokens_per_second"] = round(output_tokens / (done.eval_duration / 1e9), 2)
        log.debug("ollama %s: %s", self.model, timing)
        num_ctx = (self.options or {}).get("num_ctx")
        return Normalized(
            "cost",
            cost_usd=0.0,
            cost_cumulative=False,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            context_window=num_ctx if isinstance(num_ctx, int) else None,
            model=done.model or self.model,
            raw=timing,
        )


def _partials(response: _Response, sent: dict[str, int], index: int) -> list[Normalized]:
    """The new characters of each part since the last call, as ``delta`` values."""
    items: list[Normalized] = []
    for role, text in (("thinking", response.thinking), ("assistant", response.content)):
        offset = sent[role]
        if len(text) > offset:
            items.append(
                Normalized(
                    "delta",
                    status=role,
                    text=text[offset:],
                    raw={
                        "type": "ollama.delta",
                        "role": role,
                        "offset": offset,
                        "response": index,
                    },
                )
            )
            sent[role] = len(text)
    return items

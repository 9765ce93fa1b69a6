"""The normalized provider message: what every stream parser hands a session.

Parsers (``supervisor/providers/*_stream.py``) turn each provider output line
into zero or more :class:`Normalized` values; the SessionActor turns those into
AgentMessages and session state (see ``actors/convert.py``).

Kinds and their meaning:

========== ============================================================ =========
kind       carries                                                      displayed
========== ============================================================ =========
init       ``model``, ``provider_session_id``, ``cwd``                   system
text       ``text`` (assistant prose)                                   assistant
thinking   ``text``                                                     thinking
tool_call  ``tool_name``, ``tool_input`` (dict), ``tool_id``            tool-call
tool_result``text``, ``tool_id``, ``is_error``                          tool-result
error      ``text``: an error the provider reported                     system
system     ``text``: a provider note worth showing (permission denied,  system
           "[Request interrupted by user]")
cost       ``cost_usd`` (cumulative for the provider session when       no
           ``cost_cumulative``), per-turn token counts, and the model's
           ``context_window`` when the provider reports it
status     ``text``/``status``: a transient provider state (api retry)  no
approval   the agent waits for a person: ``tool_name``, ``tool_input``,  system
           ``tool_id``, ``text`` (a one-line summary), ``raw``
           ``{"request": what the provider needs to answer it,
           "suggestions"?: what remember would allow}``
delta      ``text``: characters added to a message still streaming;    no
           ``status``: its role (``assistant`` or ``thinking``);
           ``raw`` ``{"offset": characters before them}``. Published as
           ``agent.delta`` (a preview, never stored); the whole message
           follows as one ``text``/``thinking`` value
compaction context was compacted                                        no
turn_end   the turn finished; ``is_error`` and ``text`` (error text),   no
           ``error_info``: the provider's error code when it gives one
unknown    ``raw``: a line the parser does not understand               no
========== ============================================================ =========

**The tool vocabulary.** Providers map their tools onto a few neutral names so
that display, health and file-conflict detection need no provider knowledge: a
shell command is a ``tool_call`` named :data:`SHELL_TOOL` with the command line
under ``command``; a tool that writes or reads one file names it under
:data:`FILE_PATH_KEY` (Claude Code's own tools already do; codex and ollama map
theirs: ``commandExecution`` → ``Bash``, a file change → ``Write``/``Edit``/
``Delete`` with ``file_path``).

Every value may carry ``parent_id`` (a sub-agent's parent tool call) and
``raw`` (the decoded source line, for storage of unknown lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal[
    "init",
    "text",
    "thinking",
    "tool_call",
    "tool_result",
    "error",
    "system",
    "cost",
    "status",
    "delta",
    "approval",
    "compaction",
    "turn_end",
    "unknown",
]

SHELL_TOOL = "Bash"
"""The normalized name of a shell command tool call (its input has ``command``)."""
FILE_PATH_KEY = "file_path"
"""The normalized input key naming the one file a tool call reads or writes."""

DISPLAYED_KINDS: frozenset[str] = frozenset(
    {"init", "text", "thinking", "tool_call", "tool_result", "error", "system"}
)


@dataclass(slots=True)
class Normalized:
    """One provider event in provider-neutral form (see the module table)."""

    kind: Kind
    text: str = ""
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None
    tool_id: str | None = None
    parent_id: str | None = None
    is_error: bool = False
    model: str | None = None
    provider_session_id: str | None = None
    cwd: str | None = None
    status: str | None = None
    cost_usd: float | None = None
    cost_cumulative: bool = True
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    context_window: int | None = None
    error_info: str | None = None
    raw: dict[str, Any] | None = None

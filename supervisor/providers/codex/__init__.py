"""The ``codex`` provider: OpenAI Codex driven through its JSON-RPC ``codex app-server``.

One long-lived ``codex app-server`` process per session speaks JSONL JSON-RPC on
stdio. ``adapter.py`` is the provider the daemon loads (entry point
``codex``); the rest is split by concern:

* ``protocol.py`` — :class:`CodexProtocol`, the session's dialect: handshake,
  thread start/resume, turns, interrupts, pending approvals and the answers to
  server requests;
* ``items.py`` — server notifications (items, deltas, usage, errors, turn ends)
  turned into :class:`~corral.actors.normalized.Normalized` values;
* ``approvals.py`` — Codex's approval requests as corral approvals, and the
  answers to a person's decisions;
* ``tools.py`` — Codex tool items (commands, file changes, MCP calls, …) as
  corral tool calls and results;
* ``pricing.py`` — the price table that turns token usage into dollars;
* ``options.py`` — ``permissionMode`` → approval policy and sandbox, and the
  ``providerConfig`` schema;
* ``launch.py`` — finding the native binary, its version, argv, env and the
  corral-owned ``CODEX_HOME``.
"""

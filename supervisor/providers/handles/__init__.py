"""Reusable :class:`~corral.actors.ports.ProviderHandle` bases for provider packages.

``stdio_stream``: a long-lived process speaking a line protocol on stdin/stdout
(claude, mock, codex app-server). ``thread_stream``: turns streamed in-process
on a worker thread (HTTP providers such as ollama).
"""

"""The ``mock`` provider: corral's built-in simulated agent (no network, no keys).

``adapter`` is the provider the daemon loads; ``python -m
corral.supervisor.providers.mock`` is the agent program it runs (``agent``,
``script``, ``config``). This file imports nothing, so the program starts fast.
"""

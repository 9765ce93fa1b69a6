"""The ``claude`` provider: Claude Code in one long-lived stream-json process.

``launch`` finds the binary and builds argv and environment, ``stream`` reads
the CLI's stream-json output (and encodes what corral writes to it),
``approvals`` turns its permission prompts into approvals and encodes their
answers, ``dialect`` is the line protocol that joins them for one process, and
``adapter`` is the :class:`~corral.supervisor.providers.api.Provider` the daemon
loads (entry point ``claude``).
"""

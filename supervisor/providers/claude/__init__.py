"""The ``claude`` provider: Claude Code in one long-lived stream-json process.

``launch`` finds the binary and builds argv and environment, ``stream`` reads
the CLI's stream-json output (and encodes what corral writes to it), and
``adapter`` is the :class:`~corral.supervisor.providers.api.Provider` the daemon
loads (entry point ``claude``).
"""

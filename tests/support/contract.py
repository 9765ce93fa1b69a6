"""The contract's method list and per-method error reasons, written out once for
the tests to check the daemon's own definitions and answers against."""

from __future__ import annotations

CONTRACT_METHODS = frozenset(
    {
        "daemon.ping",
        "daemon.info",
        "daemon.shutdown",
        "rpc.describe",
        "agent.start",
        "agent.stop",
        "agent.prompt",
        "session.get",
        "session.list",
        "session.load",
        "session.messages.load",
        "session.restore",
        "session.clear",
        "session.purge",
        "project.purge",
        "settings.getAll",
        "settings.set",
        "health.get",
        "notifications.list",
        "conflicts.list",
        "conflicts.ack",
        "approvals.list",
        "agent.approve",
    }
)

# The reasons the contract's method table names (corral may answer more).
CONTRACT_METHOD_ERRORS: dict[str, frozenset[str]] = {
    "agent.start": frozenset(
        {
            "session_running",
            "start_in_progress",
            "provider_unavailable",
            "overloaded",
            "invalid_params",
        }
    ),
    "agent.stop": frozenset({"no_session"}),
    "agent.prompt": frozenset({"no_session"}),
    "session.messages.load": frozenset({"not_found"}),
    "session.purge": frozenset({"session_running"}),
    "project.purge": frozenset({"session_running"}),
    "settings.set": frozenset({"invalid_params"}),
    "agent.approve": frozenset({"no_session", "not_found"}),
}

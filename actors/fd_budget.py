"""The daemon's file-descriptor budget.

Every live session holds about five descriptors (its provider's stdin, stdout
and stderr pipes, a pidfd, a tracked pidfd) and briefly a few more while it is
spawned; every connected client holds one; the database and ZeroMQ hold a fixed
few. The budget keeps the daemon clear of ``EMFILE``:

* at start, :func:`raise_soft_limit` lifts the soft ``RLIMIT_NOFILE`` to the
  hard limit (systemd's default soft limit is 1024; the unit sets
  ``LimitNOFILE=``);
* :func:`check_start_room` refuses a start (``overloaded``) unless a session's
  share (:data:`PER_SESSION_FDS`) still fits below the soft limit with the
  client reserve (:func:`client_reserve`) left over;
* what is left is for clients: each connection holds one descriptor. libzmq
  (4.3.5) aborts the process when an ipc ``accept`` fails with ``EMFILE``, and
  there is no way to stop it accepting short of unbinding, which drops every
  connected client; the raised soft limit (65536 under the unit) is what keeps
  connections from getting there.
"""

from __future__ import annotations

import os
import resource

from corral.protocol.errors import Overloaded

PER_SESSION_FDS = 8
"""Descriptors a starting session may need (five held, more while spawning)."""


SOFT_LIMIT_CAP = 1 << 20
"""The soft limit is raised to the hard limit, at most to this."""


def limit() -> int:
    """The soft ``RLIMIT_NOFILE`` now (a very large limit counts as the cap)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return SOFT_LIMIT_CAP if soft == resource.RLIM_INFINITY else min(soft, SOFT_LIMIT_CAP)


def raise_soft_limit() -> tuple[int, int]:
    """Lift the soft limit to the hard one (capped); returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = SOFT_LIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, SOFT_LIMIT_CAP)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def open_count() -> int:
    """Descriptors this process has open now."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own
    except OSError:
        return 0


def client_reserve(soft: int) -> int:
    """Descriptors kept for clients (connections) and the daemon's own needs:
    an eighth of the limit, at least 32."""
    return max(32, soft // 8)


def check_start_room() -> None:
    """Raise ``overloaded`` if one more session would eat into the client reserve."""
    soft = limit()
    used = open_count()
    if used + PER_SESSION_FDS + client_reserve(soft) > soft:
        raise Overloaded(
            f"too few file descriptors left for another session ({used} of {soft} in use); "
            "retry later, or raise the daemon's RLIMIT_NOFILE"
        )

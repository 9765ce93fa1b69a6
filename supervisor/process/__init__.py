"""Supervising provider child processes: spawn, read, signal, stop, kill what is left.

One module per job:

* :mod:`.child` -- :class:`ProviderProcess`, one provider CLI in its own
  session: spawn, stdout/stderr reads, stdin writes, the signal ladder, the
  exit (reported once as an :class:`~corral.actors.ports.ExitReport`);
* :mod:`.loop` -- :class:`PipeLoop`, the one thread that watches every
  provider's pipes and exit and runs their timers;
* :mod:`.stdin` -- :class:`StdinWriter`, ordered stdin writes that never block the loop;
* :mod:`.reaper` -- :class:`Reaper`, the exit work (kill what is left, reap)
  on a few threads, one ``/proc`` scan per batch of exits;
* :mod:`.ladder` -- :class:`StopLadder`, when each signal of a stop ladder is due;
* :mod:`.lines` -- :class:`LineSplitter`, stdout into bounded lines;
* :mod:`.tree` -- :class:`DescendantTracker`, every provider's descendants
  (also outside its group), orphans handed to a subreaper, and killing what
  a leader leaves behind; injected into each :class:`ProviderProcess`
  (:func:`default_tracker` otherwise);
* :mod:`.kill` -- signalling by ``(pid, start time)`` through pidfds,
  freeze-then-kill, reaping by PID (never ``waitpid(-1)``);
* :mod:`.procfs` -- the ``/proc`` reads and the subreaper ``prctl``;
* :mod:`.spawner` -- :class:`Spawner`, the one long-lived thread that forks
  every provider with a parent-death signal, so it dies with the daemon;
* :mod:`.ledger` -- :class:`ProviderLedger`, the live providers (and their
  descendants) on disk, for the next start;
* :mod:`.sweep` -- at start, killing what the last run's providers left.
"""

from corral.actors.ports import ExitReport
from corral.supervisor.process.child import ProviderProcess
from corral.supervisor.process.kill import (
    Pinned,
    freeze_and_kill,
    pin_process,
    reap_pid,
)
from corral.supervisor.process.ladder import StopLadder
from corral.supervisor.process.ledger import LedgerEntry, ProviderLedger, read_ledger
from corral.supervisor.process.lines import LineSplitter
from corral.supervisor.process.loop import PipeLoop, default_loop
from corral.supervisor.process.procfs import (
    ProcStat,
    become_subreaper,
    children_of,
    is_subreaper,
    proc_stat,
    session_members,
)
from corral.supervisor.process.reaper import Reaper, default_reaper
from corral.supervisor.process.spawner import Spawner, default_spawner, die_with_parent
from corral.supervisor.process.sweep import sweep_ledger
from corral.supervisor.process.tree import (
    TRACK_INTERVAL,
    DescendantTracker,
    ProcessTree,
    default_tracker,
)

__all__ = [
    "TRACK_INTERVAL",
    "DescendantTracker",
    "ExitReport",
    "LedgerEntry",
    "LineSplitter",
    "Pinned",
    "PipeLoop",
    "ProcStat",
    "ProcessTree",
    "ProviderLedger",
    "ProviderProcess",
    "Reaper",
    "Spawner",
    "StopLadder",
    "become_subreaper",
    "children_of",
    "default_loop",
    "default_reaper",
    "default_spawner",
    "default_tracker",
    "die_with_parent",
    "freeze_and_kill",
    "is_subreaper",
    "pin_process",
    "proc_stat",
    "read_ledger",
    "reap_pid",
    "session_members",
    "sweep_ledger",
]

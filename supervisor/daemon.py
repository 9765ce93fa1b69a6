"""The daemon process: wiring the actors, the router and the providers together.

Start order: directories → data-dir lock → sweep (kill what the providers of
a dead daemon left running, from its provider ledger) and a fresh ledger →
database (migrate, mark sessions a dead daemon left running as interrupted) →
scheduler → store → readers → registry → router (bind) → ``endpoints.json`` →
``daemon.started`` → heartbeat → systemd READY → watchdog. Shutdown runs the
reverse: systemd STOPPING → refuse new starts → end every session (interrupt
and signal ladder) → drain the store → ``daemon.stopping`` → close sockets →
remove ``endpoints.json``. Any actor still alive at the end is logged as a bug.

Provider processes start from the daemon's environment minus what is the
daemon's own (:func:`child_base_env`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pykka
import zmq

from corral.actors import db, db_check, fd_budget, oplog
from corral.actors.board import SessionBoard
from corral.actors.messages import Notify, Shutdown
from corral.actors.reader import ReaderActor, ReaderPool
from corral.actors.registry import RegistryActor
from corral.actors.scheduler import Scheduler
from corral.actors.store import Drain, Heartbeat, StoreActor
from corral.protocol import endpoints
from corral.supervisor import datadir_lock
from corral.supervisor.config import ConfigError, DaemonConfig
from corral.supervisor.curve import CurveServer, CurveSetupError
from corral.supervisor.desktop import DesktopNotifier
from corral.supervisor.notify import ProbedOutbox, Watchdog, sd_notify
from corral.supervisor.process import ledger as provider_ledger
from corral.supervisor.process import procfs, sweep
from corral.supervisor.providers.api import ProviderContext
from corral.supervisor.providers.registry import ProviderRegistry
from corral.supervisor.router import Router

log = logging.getLogger("corral.daemon")

READERS = 2
RESTART_ERROR = "interrupted: daemon restarted"
SESSIONS_STOP_S = 20.0
"""Shutdown: how long every session may take to end (the stop ladder runs inside)."""
STORE_DRAIN_S = 10.0
"""Shutdown: how long the store may take to commit what is queued."""
ROUTER_STOP_S = 5.0
STOP_BUDGET_S = SESSIONS_STOP_S + STORE_DRAIN_S + ROUTER_STOP_S
"""The longest a clean shutdown takes; the unit's TimeoutStopSec is above it."""
DAEMON_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
"""systemd's messages to the daemon itself, not to its children."""


def child_base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment provider processes start from: the daemon's, minus corral's
    own ``CORRAL_*`` and the systemd variables addressed to the daemon."""
    return {
        key: value
        for key, value in environ.items()
        if not key.startswith("CORRAL_") and key not in DAEMON_ENV
    }


def version() -> str:
    try:
        return metadata.version("corral")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def _ipc_path(url: str) -> Path | None:
    return Path(url[len("ipc://") :]) if url.startswith("ipc://") else None


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.boot = uuid.uuid4().hex[:12]
        self.started_at = db.now_ms()
        self.stop_requested = threading.Event()
        self.stop_reason = "shutdown requested"
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._outbox = ProbedOutbox()
        self._scheduler = Scheduler()
        self._desktop = DesktopNotifier()
        self._store: pykka.ActorRef[Any] | None = None
        self._readers: ReaderPool | None = None
        self._registry: pykka.ActorRef[Any] | None = None
        self._router: Router | None = None
        self._discovery: Path | None = None
        self._curve: CurveServer | None = None
        self._watchdog: Watchdog | None = None
        self._stopped = False
        self._bound = False
        self._lock: datadir_lock.DataDirLock | None = None
        self._ledger: provider_ledger.ProviderLedger | None = None

    # ------------------------------------------------------------ start

    def start(self) -> None:
        # Orphans of provider trees (tools in sessions of their own) come to us,
        # not to init, so they can still be killed and reaped.
        if procfs.become_subreaper():
            log.debug("child subreaper: orphaned provider descendants are reparented to us")
        else:
            log.debug("cannot become a child subreaper: orphaned descendants go to init")
        before, after = fd_budget.raise_soft_limit()  # systemd's soft default is 1024
        if after != before:
            log.debug("file descriptor soft limit raised from %d to %d", before, after)
        cfg = self.config
        self._prepare_dirs()
        self._lock = datadir_lock.acquire(cfg.data_dir)  # a second daemon exits 2 here
        self._refuse_if_running()
        self._sweep_and_record()
        if cfg.curve_dir is not None:
            try:
                self._curve = CurveServer(self._ctx, cfg.curve_dir)
            except CurveSetupError as exc:
                raise ConfigError(str(exc)) from None
        try:
            if not db_check.check_database(cfg.db_path):
                log.warning("%s: quick_check cut short; run `corral db check`", cfg.db_path)
        except db_check.DatabaseError as exc:
            raise ConfigError(str(exc)) from None
        conn = db.connect(cfg.db_path)
        denied: list[dict[str, Any]] = []
        lost: list[tuple[str, str]] = []  # (session, project) a dead daemon left running
        interrupted = db.mark_interrupted(conn, RESTART_ERROR, denied, lost)
        conn.close()
        oplog.restart_recovered(interrupted)

        self._scheduler.start()
        max_bytes = cfg.db_max_mib * 1024 * 1024 if cfg.db_max_mib else None
        self._store = StoreActor.start(cfg.db_path, self._outbox, max_bytes)
        self._readers = ReaderPool(
            [ReaderActor.start(cfg.db_path, self._outbox) for _ in range(READERS)]
        )
        providers = ProviderRegistry.load(
            ProviderContext(
                data_dir=cfg.data_dir,
                base_env=child_base_env(os.environ),
                binaries=cfg.binaries,
                transcript=lambda session_id: db.read_transcript(cfg.db_path, session_id),
            )
        )
        self._board = SessionBoard()
        info = {
            "version": version(),
            "boot": self.boot,
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "endpoints": {"rpc": cfg.rpc_url, "events": cfg.events_url},
            "dataDir": str(cfg.data_dir),
        }
        self._registry = RegistryActor.start(
            db_path=cfg.db_path,
            store=self._store,
            readers=self._readers,
            scheduler=self._scheduler,
            outbox=self._outbox,
            launcher=providers,
            catalog=providers,
            info=info,
            desktop=self._desktop.notify,
            settings_defaults=dict(cfg.settings),
            pinned_settings=frozenset(cfg.pinned_settings),
            board=self._board,
        )
        self._router = Router(
            ctx=self._ctx,
            rpc_url=cfg.rpc_url,
            events_url=cfg.events_url,
            outbox=self._outbox,
            registry=self._registry,
            readers=self._readers,
            boot=self.boot,
            on_shutdown=self.stop_requested.set,
            curve=self._curve,
            board=self._board,
        )
        try:
            if self._curve is not None:
                self._curve.start()
            self._router.start()
        except zmq.ZMQError as exc:
            self._stop_actors()
            if self._curve is not None:
                self._curve.stop()
            raise ConfigError(f"cannot bind {cfg.rpc_url} / {cfg.events_url}: {exc}") from None
        if self._curve is not None:
            self._curve.watch()
        self._bound = True
        info["endpoints"] = {"rpc": self._router.rpc_url, "events": self._router.events_url}
        self._write_discovery()
        self._outbox.publish(
            "daemon.started",
            {
                "version": version(),
                "pid": os.getpid(),
                "startedAt": self.started_at,
                "endpoints": info["endpoints"],
            },
        )
        for resolved in denied:  # pending approvals a dead daemon left: denied by restart
            project_id = resolved.pop("projectId", None)
            self._outbox.publish("approval.resolved", resolved, project_id)
        for session_id, project_id in lost:  # one notification per interrupted session
            message = f"{project_id}: {RESTART_ERROR}"
            self._registry.tell(Notify("error", "agent_error", message, session_id, project_id))
        self._scheduler.call_every(1.0, self._store, Heartbeat)
        sd_notify("READY=1")
        self._watchdog = Watchdog([self._outbox.router, self._outbox.store], self._outbox.counts)
        self._watchdog.start()
        log.info(
            "corral %s listening on %s (events %s), data in %s",
            version(),
            self._router.rpc_url,
            self._router.events_url,
            cfg.data_dir,
        )

    def _sweep_and_record(self) -> None:
        """Kill what a dead daemon's providers left running, then record ours afresh."""
        path = self.config.data_dir / provider_ledger.LEDGER_NAME
        try:
            sweep.sweep_ledger(path)
        except Exception:
            log.exception("sweeping what the last run left failed")
        self._ledger = provider_ledger.ProviderLedger(path)
        provider_ledger.install(self._ledger)

    def _prepare_dirs(self) -> None:
        """The data directory (0700) and the socket directories (0700, ours, not
        writable by others), or a ConfigError saying what is wrong with which."""
        cfg = self.config
        try:
            endpoints.ensure_private_dir(cfg.data_dir)
        except OSError as exc:
            what = "it is not a directory" if cfg.data_dir.exists() else exc.strerror or exc
            raise ConfigError(f"cannot use the data directory {cfg.data_dir}: {what}") from None
        for url in (cfg.rpc_url, cfg.events_url):
            try:  # abstract/relative refused; an existing socket dir is never chmodded
                endpoints.prepare_socket_dir(url)
            except endpoints.EndpointError as exc:
                raise ConfigError(str(exc)) from None
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the socket directory of {url}: {exc.strerror or exc} "
                    f"({exc.filename}); choose another with XDG_RUNTIME_DIR or --rpc/--events"
                ) from None
        try:
            endpoints.ensure_runtime_dir(cfg.runtime_dir)
        except OSError as exc:
            raise ConfigError(str(exc)) from None

    def _refuse_if_running(self) -> None:
        path = _ipc_path(self.config.rpc_url)
        if path is None or not path.exists():
            return
        probe = self._ctx.socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        try:
            probe.connect(self.config.rpc_url)
            probe.send_multipart([b"", b'{"jsonrpc":"2.0","id":0,"method":"daemon.ping"}'])
            if probe.poll(500):
                raise ConfigError(f"another corral daemon is already serving {self.config.rpc_url}")
        finally:
            probe.close()
        with contextlib.suppress(OSError):
            path.unlink()  # stale socket of a dead daemon

    def _write_discovery(self) -> None:
        assert self._router is not None
        self._discovery = endpoints.write_discovery(
            self.config.runtime_dir,
            {
                "rpc": self._router.rpc_url,
                "events": self._router.events_url,
                "pid": os.getpid(),
                "boot": self.boot,
                "version": version(),
                "curveServerKey": self._curve.server_key if self._curve is not None else None,
            },
        )

    # ------------------------------------------------------------ stop

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._watchdog is not None:
            self._watchdog.stop()
        sd_notify("STOPPING=1")
        if self._router is not None:
            self._router.stopping = True
        if self._registry is not None:
            done = threading.Event()
            self._registry.tell(Shutdown(done))
            if not done.wait(SESSIONS_STOP_S):
                log.error("shutdown: sessions did not end in time")
        if self._store is not None:
            drained = threading.Event()
            self._store.tell(Drain(then=drained.set))
            if not drained.wait(STORE_DRAIN_S):
                log.error("shutdown: the store did not drain in time")
        self._outbox.publish("daemon.stopping", {"reason": self.stop_reason})
        self._scheduler.stop()
        self._stop_actors()
        self._desktop.close()
        if self._ledger is not None:
            provider_ledger.install(None)
            self._ledger.close()
        if self._router is not None:
            self._router.stop(ROUTER_STOP_S)
        if self._curve is not None:
            self._curve.stop()
        self._remove_files()
        self._outbox.close()
        self._ctx.term()
        leftovers = pykka.ActorRegistry.get_all()
        if leftovers:
            log.error("bug: actors still alive after shutdown: %s", leftovers)
            pykka.ActorRegistry.stop_all(block=True, timeout=5)
        if self._lock is not None:
            self._lock.release()
        if self._bound:  # a refused start says why in one line, nothing more
            log.info("corral stopped")

    def _stop_actors(self) -> None:
        if self._registry is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self._registry.stop(block=True, timeout=5)
        if self._readers is not None:
            self._readers.stop()
        if self._store is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self._store.stop(block=True, timeout=10)

    def _remove_files(self) -> None:
        if self._discovery is not None:
            with contextlib.suppress(OSError):
                endpoints.remove_discovery(self.config.runtime_dir, pid=os.getpid())
        if not self._bound:
            return  # never bound: the socket files (if any) belong to someone else
        for url in (self.config.rpc_url, self.config.events_url):
            path = _ipc_path(url)
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()


def serve(config: DaemonConfig) -> int:
    """Run the daemon in the foreground until SIGINT/SIGTERM or daemon.shutdown."""
    daemon = Daemon(config)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received signal %d, stopping", signum)
        daemon.stop_reason = f"signal {signal.Signals(signum).name}"
        daemon.stop_requested.set()

    # Handlers first: a stop request right after READY must still be clean.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        daemon.start()
        while not daemon.stop_requested.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        daemon.stop()
    return 0

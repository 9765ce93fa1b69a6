"""The daemon process: wiring the actors, the router and the providers together.

Start order: directories → database (migrate, mark sessions a dead daemon left
running as interrupted) → scheduler → store → readers → registry → router
(bind) → ``endpoints.json`` → ``daemon.started`` → heartbeat → systemd READY.
Shutdown runs the reverse: refuse new starts → end every session (interrupt
and signal ladder) → drain the store → ``daemon.stopping`` → close sockets →
remove ``endpoints.json``. Any actor still alive at the end is logged as a bug.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import pykka
import zmq

from corral.actors import db
from corral.actors.messages import Shutdown
from corral.actors.reader import ReaderActor, ReaderPool
from corral.actors.registry import RegistryActor
from corral.actors.scheduler import Scheduler
from corral.actors.store import Drain, Heartbeat, StoreActor
from corral.protocol import endpoints
from corral.supervisor.config import ConfigError, DaemonConfig
from corral.supervisor.notify import sd_notify
from corral.supervisor.outbox import RouterOutbox
from corral.supervisor.process import procfs
from corral.supervisor.providers.api import ProviderContext
from corral.supervisor.providers.registry import ProviderRegistry
from corral.supervisor.router import Router

log = logging.getLogger("corral.daemon")

READERS = 2
RESTART_ERROR = "interrupted: daemon restarted"


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
        self._outbox = RouterOutbox()
        self._scheduler = Scheduler()
        self._store: pykka.ActorRef[Any] | None = None
        self._readers: ReaderPool | None = None
        self._registry: pykka.ActorRef[Any] | None = None
        self._router: Router | None = None
        self._discovery: Path | None = None
        self._stopped = False
        self._bound = False

    # ------------------------------------------------------------ start

    def start(self) -> None:
        # Orphans of provider trees (tools in sessions of their own) come to us,
        # not to init, so they can still be killed and reaped.
        if procfs.become_subreaper():
            log.debug("child subreaper: orphaned provider descendants are reparented to us")
        else:
            log.debug("cannot become a child subreaper: orphaned descendants go to init")
        cfg = self.config
        endpoints.ensure_private_dir(cfg.data_dir)
        for url in (cfg.rpc_url, cfg.events_url):
            path = _ipc_path(url)
            if path is not None:
                endpoints.ensure_private_dir(path.parent)
        self._refuse_if_running()
        conn = db.connect(cfg.db_path)
        interrupted = db.mark_interrupted(conn, RESTART_ERROR)
        conn.close()
        if interrupted:
            log.warning("%d sessions were running when the daemon died", interrupted)

        self._scheduler.start()
        self._store = StoreActor.start(cfg.db_path, self._outbox)
        self._readers = ReaderPool(
            [ReaderActor.start(cfg.db_path, self._outbox) for _ in range(READERS)]
        )
        providers = ProviderRegistry.load(
            ProviderContext(
                data_dir=cfg.data_dir,
                base_env=dict(os.environ),
                binaries={"claude": cfg.claude_bin} if cfg.claude_bin else {},
                transcript=lambda session_id: db.read_transcript(cfg.db_path, session_id),
            )
        )
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
        )
        try:
            self._router.start()
        except zmq.ZMQError as exc:
            self._stop_actors()
            raise ConfigError(f"cannot bind {cfg.rpc_url} / {cfg.events_url}: {exc}") from None
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
        self._scheduler.call_every(1.0, self._store, Heartbeat)
        sd_notify("READY=1")
        log.info(
            "corral %s listening on %s (events %s), data in %s",
            version(),
            self._router.rpc_url,
            self._router.events_url,
            cfg.data_dir,
        )

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
        endpoints.ensure_private_dir(self.config.runtime_dir)
        self._discovery = endpoints.write_discovery(
            self.config.runtime_dir,
            {
                "rpc": self._router.rpc_url,
                "events": self._router.events_url,
                "pid": os.getpid(),
                "boot": self.boot,
                "version": version(),
                "curveServerKey": None,
            },
        )

    # ------------------------------------------------------------ stop

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        sd_notify("STOPPING=1")
        if self._router is not None:
            self._router.stopping = True
        if self._registry is not None:
            done = threading.Event()
            self._registry.tell(Shutdown(done))
            if not done.wait(20.0):
                log.error("shutdown: sessions did not end in time")
        if self._store is not None:
            drained = threading.Event()
            self._store.tell(Drain(then=drained.set))
            if not drained.wait(10.0):
                log.error("shutdown: the store did not drain in time")
        self._outbox.publish("daemon.stopping", {"reason": self.stop_reason})
        self._scheduler.stop()
        self._stop_actors()
        if self._router is not None:
            self._router.stop()
        self._remove_files()
        self._outbox.close()
        self._ctx.term()
        leftovers = pykka.ActorRegistry.get_all()
        if leftovers:
            log.error("bug: actors still alive after shutdown: %s", leftovers)
            pykka.ActorRegistry.stop_all(block=True, timeout=5)
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

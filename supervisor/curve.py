"""CURVE on the daemon's tcp sockets: keys, ZAP authentication, logged refusals.

With ``--curve-dir DIR`` (``corral keys generate`` writes it) every ``tcp://``
socket of the daemon is a CurveZMQ server with ``DIR/server.key_secret``, and
pyzmq's :class:`~zmq.auth.thread.ThreadAuthenticator` (ZAP) accepts exactly the
public keys of the certificate files ``DIR/authorized/*.key``. The directory is
looked at again on every handshake (a listing, and a reload only when it
changed), so dropping a client's ``.key`` file in takes effect without a
restart, and removing it refuses the next connection.

Refusals are logged, throttled (one line per :data:`REFUSAL_LOG_INTERVAL_S` with
the count of the others): an unknown key from the ZAP callback, a client that
is not a CURVE client (or has the wrong server key) from a socket monitor.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.certs import load_certificate
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("corral.curve")

SERVER_SECRET = "server.key_secret"
SERVER_PUBLIC = "server.key"
AUTHORIZED = "authorized"
REFUSAL_LOG_INTERVAL_S = 60.0
_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class CurveSetupError(Exception):
    """The CURVE directory cannot be used; the message says why and what to do."""


class RefusalLog:
    """Logs a refusal at most once per ``interval`` seconds, counting the rest."""

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -interval
        self._suppressed = 0
        self.total = 0

    def refused(self, message: str, now: float | None = None) -> bool:
        """Count one refusal; True (and a log line) when it is due."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.total += 1
            if now - self._last < self.interval:
                self._suppressed += 1
                return False
            more, self._suppressed, self._last = self._suppressed, 0, now
        extra = f" ({more} more refused in the last {self.interval:g}s)" if more else ""
        log.warning("refused a client: %s%s", message, extra)
        return True


class AuthorizedKeys:
    """The public keys of ``directory/*.key``, reloaded when the listing changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._lock = threading.Lock()

    def _listing(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = [e for e in os.scandir(self.directory) if e.name.endswith(".key")]
        except OSError:
            return ()
        out = []
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append((entry.name, st.st_mtime_ns, st.st_size))
        return tuple(sorted(out))

    def keys(self) -> frozenset[bytes]:
        """The Z85 public keys allowed now."""
        with self._lock:
            signature = self._listing()
            if signature != self._signature:
                self._signature = signature
                self._keys = frozenset(self._load(name for name, _m, _s in signature))
            return self._keys

    def _load(self, names: Any) -> list[bytes]:
        keys = []
        for name in names:
            path = self.directory / name
            try:
                public, _secret = load_certificate(path)
            except (OSError, ValueError) as exc:
                log.warning("ignoring %s: not a CURVE certificate (%s)", path, exc)
                continue
            keys.append(public)
        log.info("CURVE: %d authorized client key(s) in %s", len(keys), self.directory)
        return keys

    def __contains__(self, key: bytes) -> bool:
        return key in self.keys()


def load_server_keys(directory: Path) -> tuple[bytes, bytes]:
    """(public, secret) of ``directory/server.key_secret``, else CurveSetupError."""
    path = directory / SERVER_SECRET
    hint = f"create the keys with: corral keys generate --dir {directory}"
    if not path.is_file():
        raise CurveSetupError(f"no CURVE server key {path}; {hint}")
    try:
        public, secret = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveSetupError(f"cannot read {path}: {exc}; {hint}") from None
    if not secret:
        raise CurveSetupError(f"{path} holds no secret key; {hint}")
    if os.stat(path).st_mode & 0o077:
        raise CurveSetupError(f"{path} is readable by others; fix it with: chmod 600 {path}")
    return public, secret


class CurveServer:
    """CURVE for the daemon's tcp sockets; :meth:`start` before binding, :meth:`stop`
    after the sockets are closed and before the context is terminated."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        directory: Path,
        *,
        refusal_interval: float = REFUSAL_LOG_INTERVAL_S,
    ) -> None:
        self.directory = directory
        self.public_key, self._secret_key = load_server_keys(directory)
        self.authorized = AuthorizedKeys(directory / AUTHORIZED)
        self.refusals = RefusalLog(refusal_interval)
        self._ctx = ctx
        self._auth: ThreadAuthenticator | None = None
        self._monitors: list[zmq.Socket[Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def server_key(self) -> str:
        """The daemon's public key, Z85 (``curveServerKey`` of endpoints.json)."""
        return self.public_key.decode()

    def start(self) -> None:
        """Start the ZAP handler (every CURVE handshake of this context asks it)."""
        if not (self.directory / AUTHORIZED).is_dir():
            log.warning(
                "CURVE: %s does not exist: no client can connect until a key is put there",
                self.directory / AUTHORIZED,
            )
        self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("corral.curve.zap"))
        self._auth.start()
        self._auth.configure_curve_callback("*", credentials_provider=self)

    def callback(self, _domain: str, client_key: bytes) -> bool:
        """ZAP: is this Z85 client key authorized? (pyzmq's credentials provider API)"""
        if client_key in self.authorized:
            return True
        self.refusals.refused(
            f"CURVE key {client_key.decode(errors='replace')} is not in {self.authorized.directory}"
        )
        return False

    def secure(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` (not yet bound) a CURVE server, and watch its failed handshakes."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self._secret_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        self._monitors.append(sock.get_monitor_socket(_FAILED))

    def watch(self) -> None:
        """Start logging the failed handshakes of the sockets secured so far."""
        if self._thread is None and self._monitors:
            self._thread = threading.Thread(
                target=self._watch, name="corral-curve-monitor", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        poller = zmq.Poller()
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(250))
            except zmq.ZMQError:
                return
            for monitor in ready:
                try:
                    event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
                except zmq.ZMQError:
                    continue
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    continue  # the ZAP callback logged it, with the key
                endpoint = event.get("endpoint", b"")
                where = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
                self.refusals.refused(
                    f"a handshake on {where} failed (not a CURVE client, or the wrong server key)"
                )

    def stop(self) -> None:
        """Stop the monitor and the ZAP handler (the sockets are closed already)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors.clear()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

"""Desktop notifications: corral's notifications on the freedesktop notification service.

:class:`DesktopNotifier` sends each notification it is given as a
``org.freedesktop.Notifications.Notify`` call on the session D-Bus
(``DBUS_SESSION_BUS_ADDRESS``), through :mod:`jeepney` (pure Python): app name
``corral``, the kind and project as the summary, the message as the body,
urgency *critical* for errors, *normal* for conflicts, stalls and approvals,
*low* for the rest.

It never holds its caller up: :meth:`DesktopNotifier.notify` puts the
notification on a queue of :data:`QUEUE_SIZE` entries (when full, the new one
is dropped) and returns; one thread of its own connects and sends, each call
bounded by :data:`CALL_TIMEOUT_S`. Nothing fails when there is no bus, the bus
cannot be reached or the service refuses: one log line says so (one per streak
of failures), the notification is dropped, and the connection is tried again
at most every :data:`RETRY_S` seconds. ``enabled`` (the setting
``desktop_notifications``) is asked for each notification. The thread is a
daemon thread: a bus that authenticates and then never answers jeepney's
``Hello`` (which has no timeout of its own) wedges only that thread.
"""

from __future__ import annotations

import html
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from jeepney import DBusAddress, MessageType, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.low_level import HeaderFields

__all__ = ["APP_NAME", "DesktopNotifier", "notify_args", "urgency_of"]

log = logging.getLogger("corral.desktop")

APP_NAME = "corral"
QUEUE_SIZE = 64
"""Notifications waiting to be sent; past it new ones are dropped."""
CALL_TIMEOUT_S = 2.0
"""Longest wait for the bus: connecting, authenticating, one Notify reply."""
RETRY_S = 30.0
"""After a failed connection, the next attempt waits at least this long."""
BODY_CHARS = 1000
"""The body is cut to this many characters."""

NOTIFICATIONS = DBusAddress(
    "/org/freedesktop/Notifications",
    bus_name="org.freedesktop.Notifications",
    interface="org.freedesktop.Notifications",
)

URGENCY_LOW, URGENCY_NORMAL, URGENCY_CRITICAL = 0, 1, 2

TITLES: dict[str, str] = {
    "agent_complete": "Agent finished",
    "agent_stopped": "Agent stopped",
    "agent_error": "Agent failed",
    "agent_stalled": "Agent stalled",
    "approval_needed": "Approval needed",
    "conflict": "File conflict",
    "system": "corral",
}


def urgency_of(note: Mapping[str, Any]) -> int:
    """0 low, 1 normal, 2 critical: errors critical; conflicts, stalls, approvals
    and other warnings normal; the rest low."""
    kind, variant = note.get("kind"), note.get("variant")
    if kind == "agent_error" or variant == "error":
        return URGENCY_CRITICAL
    if kind in ("conflict", "agent_stalled", "approval_needed") or variant == "warning":
        return URGENCY_NORMAL
    return URGENCY_LOW


def notify_args(note: Mapping[str, Any]) -> tuple[Any, ...]:
    """The arguments of ``Notify`` (signature ``susssasa{sv}i``) for a Notification."""
    kind = str(note.get("kind", ""))
    title = TITLES.get(kind, "corral")
    project = note.get("projectId")
    summary = f"{title}: {project}" if project else title
    body = str(note.get("message", ""))
    if len(body) > BODY_CHARS:
        body = body[: BODY_CHARS - 1] + "…"
    hints = {"urgency": ("y", urgency_of(note)), "category": ("s", f"corral.{kind or 'notice'}")}
    # servers may read the body as markup: escape it
    return (APP_NAME, 0, "", summary, html.escape(body, quote=False), [], hints, -1)


_STOP = object()


class DesktopNotifier:
    """Sends notifications to the desktop from a thread of its own (see the module)."""

    def __init__(
        self,
        *,
        address: str | None = None,
        enabled: Callable[[], bool] = lambda: True,
        queue_size: int = QUEUE_SIZE,
        call_timeout_s: float = CALL_TIMEOUT_S,
        retry_s: float = RETRY_S,
    ) -> None:
        """``address``: the bus address (default ``$DBUS_SESSION_BUS_ADDRESS``)."""
        env_address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        self._address = address if address is not None else env_address
        self._enabled = enabled
        self._timeout = call_timeout_s
        self._retry_s = retry_s
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._conn: DBusConnection | None = None
        self._retry_at = 0.0
        self._failing = False
        self._dropping = False
        self.sent = 0
        """Notifications the service accepted."""
        self.dropped = 0
        """Notifications not sent: queue full, no bus, or refused."""

    def notify(self, note: Mapping[str, Any]) -> bool:
        """Queue a Notification for the desktop; False when it will not be sent
        (switched off, closed, or the queue is full). Never blocks."""
        if self._closed or not self._enabled():
            return False
        self._start()
        try:
            self._queue.put_nowait(dict(note))
        except queue.Full:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "desktop notifications: %d waiting, dropping new ones", self._queue.maxsize
                )
            return False
        self._dropping = False
        return True

    def close(self, timeout_s: float = CALL_TIMEOUT_S + 1.0) -> None:
        """Stop the thread (what is still queued is dropped) and close the connection."""
        with self._lock:
            self._closed = True
            thread = self._thread
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass
        conn = self._conn
        if conn is not None:  # wake the thread if it waits for the bus
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if thread is not None:
            thread.join(timeout_s)
        else:
            self._disconnect()

    # -- the sending thread --------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="corral-desktop", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                assert isinstance(item, dict)
                try:
                    self._send(item)
                except Exception as exc:  # a bug must not kill the thread
                    self._fail(f"unexpected error: {exc!r}")
        finally:
            self._disconnect()

    def _send(self, note: dict[str, Any]) -> None:
        conn = self._connect()
        if conn is None:
            self.dropped += 1
            return
        message = new_method_call(NOTIFICATIONS, "Notify", "susssasa{sv}i", notify_args(note))
        try:
            reply = conn.send_and_get_reply(message, timeout=self._timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            self._disconnect()
            self.dropped += 1
            self._fail(f"the session bus stopped answering ({exc})")
            return
        if reply.header.message_type == MessageType.error:
            self.dropped += 1
            name = reply.header.fields.get(HeaderFields.error_name, "an error")
            detail = f": {reply.body[0]}" if reply.body else ""
            self._fail(f"the notification service answered {name}{detail}")
            return
        self.sent += 1
        self._failing = False

    def _connect(self) -> DBusConnection | None:
        if self._conn is not None:
            return self._conn
        if not self._address:
            self._fail("no desktop session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
            return None
        now = time.monotonic()
        if now < self._retry_at:
            return None
        try:
            self._conn = open_dbus_connection(self._address, auth_timeout=self._timeout)
        except Exception as exc:  # jeepney raises OSError, TimeoutError, RuntimeError, KeyError
            self._retry_at = now + self._retry_s
            self._fail(f"cannot reach the session bus at {self._address}: {exc}")
            return None
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def _fail(self, why: str) -> None:
        """One log line per streak of failures (none once closing)."""
        if not self._failing and not self._closed:
            self._failing = True
            log.warning("desktop notifications: %s; not sent", why)

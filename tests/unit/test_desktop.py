"""Tests of supervisor/desktop.py against a real ``dbus-daemon --session`` started here,
with a small notification service stand-in (jeepney) that records the calls; and of
the two settings this work adds (``desktop_notifications``, ``approval_timeout_ms``).

The bus daemon is stopped by its PID at the end of each test that starts it.
"""

from __future__ import annotations

import logging
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jeepney import MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.low_level import HeaderFields, Message

from corral.actors import settings as settings_mod
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams
from corral.supervisor.desktop import (
    APP_NAME,
    BODY_CHARS,
    QUEUE_SIZE,
    DesktopNotifier,
    notify_args,
    urgency_of,
)

TIMEOUT = 10.0
LOGGER = "corral.desktop"


def note(
    kind: str, variant: str, message: str = "hello", project: str | None = "api"
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "n1",
        "kind": kind,
        "variant": variant,
        "message": message,
        "ts": 1,
    }
    if project is not None:
        out["projectId"] = project
    return out


def wait_until(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[str]:
    """The address of a private session bus (a real dbus-daemon), stopped by PID."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("dbus-daemon is not installed (Debian package dbus-daemon / dbus)")
    proc = subprocess.Popen(
        [
            daemon,
            "--session",
            "--nofork",
            f"--address=unix:path={tmp_path}/bus",
            "--print-address=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "dbus-daemon did not print its address"
        address = proc.stdout.readline().decode().strip()
        assert address.startswith("unix:path="), address
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


class FakeNotificationService:
    """Owns org.freedesktop.Notifications on the bus and records Notify calls.

    mode ``accept`` answers with an id, ``refuse`` with a D-Bus error, ``silent``
    not at all."""

    def __init__(self, address: str, mode: str = "accept") -> None:
        self.mode = mode
        self.calls: list[tuple[Any, ...]] = []
        self.headers: list[dict[HeaderFields, Any]] = []
        self.conn: DBusConnection = open_dbus_connection(address)
        reply = self.conn.send_and_get_reply(
            message_bus.RequestName("org.freedesktop.Notifications"), timeout=TIMEOUT
        )
        assert reply.body == (1,), reply.body  # primary owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg: Message = self.conn.receive(timeout=0.05)
            except TimeoutError:
                continue
            fields = msg.header.fields
            if msg.header.message_type != MessageType.method_call:
                continue
            if fields.get(HeaderFields.member) != "Notify":
                continue
            self.headers.append(dict(fields))
            self.calls.append(msg.body)
            if self.mode == "accept":
                self.conn.send(new_method_return(msg, "u", (len(self.calls),)))
            elif self.mode == "refuse":
                self.conn.send(
                    new_error(msg, "org.freedesktop.Notifications.Error.Refused", "s", ("not now",))
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.conn.close()


@pytest.fixture
def service_factory(bus: str) -> Iterator[Callable[[str], FakeNotificationService]]:
    made: list[FakeNotificationService] = []

    def make(mode: str = "accept") -> FakeNotificationService:
        made.append(FakeNotificationService(bus, mode))
        return made[-1]

    yield make
    for service in made:
        service.close()


@pytest.fixture
def notifiers() -> Iterator[list[DesktopNotifier]]:
    made: list[DesktopNotifier] = []
    yield made
    for notifier in made:
        notifier.close()


# -- through a real bus -------------------------------------------------------


def test_sends_to_the_notification_service(
    bus: str,
    service_factory: Callable[[str], FakeNotificationService],
    notifiers: list[DesktopNotifier],
) -> None:
    service = service_factory("accept")
    notifier = DesktopNotifier(address=bus)
    notifiers.append(notifier)
    assert notifier.notify(note("agent_error", "error", "API Error: 529 Overloaded <b>"))
    assert notifier.notify(note("conflict", "warning", "src/app.py written by two sessions"))
    assert notifier.notify(note("agent_stalled", "warning", "Bash hangs"))
    assert notifier.notify(note("agent_complete", "success", "done", project=None))
    wait_until(lambda: len(service.calls) == 4)
    wait_until(lambda: notifier.sent == 4)
    headers = service.headers[0]
    assert headers[HeaderFields.path] == "/org/freedesktop/Notifications"
    assert headers[HeaderFields.interface] == "org.freedesktop.Notifications"
    assert headers[HeaderFields.signature] == "susssasa{sv}i"
    app, replaces, icon, summary, body, actions, hints, expire = service.calls[0]
    assert (app, replaces, icon, actions, expire) == (APP_NAME, 0, "", [], -1)
    assert summary == "Agent failed: api"
    assert hints == {"urgency": ("y", 2), "category": ("s", "corral.agent_error")}
    assert body == "API Error: 529 Overloaded &lt;b&gt;"
    assert [call[6]["urgency"] for call in service.calls] == [
        ("y", 2),
        ("y", 1),
        ("y", 1),
        ("y", 0),
    ]
    assert [call[3] for call in service.calls[1:]] == [
        "File conflict: api",
        "Agent stalled: api",
        "Agent finished",
    ]
    assert notifier.dropped == 0


def test_switched_off_sends_nothing(
    bus: str,
    service_factory: Callable[[str], FakeNotificationService],
    notifiers: list[DesktopNotifier],
) -> None:
    service = service_factory("accept")
    on = {"value": False}
    notifier = DesktopNotifier(address=bus, enabled=lambda: on["value"])
    notifiers.append(notifier)
    assert notifier.notify(note("agent_error", "error", "first")) is False
    on["value"] = True
    assert notifier.notify(note("agent_error", "error", "second"))
    wait_until(lambda: len(service.calls) == 1)
    assert service.calls[0][4] == "second"  # sent in order: the first was never queued


def test_a_refusing_service_fails_nothing_and_logs_once(
    bus: str,
    service_factory: Callable[[str], FakeNotificationService],
    notifiers: list[DesktopNotifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = service_factory("refuse")
    notifier = DesktopNotifier(address=bus)
    notifiers.append(notifier)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(3):
            assert notifier.notify(note("system", "info", f"n{i}"))
        wait_until(lambda: notifier.dropped == 3)
    assert len(service.calls) == 3 and notifier.sent == 0
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1
    assert "org.freedesktop.Notifications.Error.Refused" in lines[0] and "not now" in lines[0]


def test_a_bus_without_the_service_fails_nothing_and_logs_once(
    bus: str, notifiers: list[DesktopNotifier], caplog: pytest.LogCaptureFixture
) -> None:
    notifier = DesktopNotifier(address=bus)
    notifiers.append(notifier)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(3):
            assert notifier.notify(note("system", "info", f"n{i}"))
        wait_until(lambda: notifier.dropped == 3)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and "ServiceUnknown" in lines[0]


def test_never_blocks_the_caller_and_bounds_its_queue(
    bus: str,
    service_factory: Callable[[str], FakeNotificationService],
    notifiers: list[DesktopNotifier],
) -> None:
    """A service that never answers: each call waits for it in the notifier's thread,
    never in the caller's; the queue holds QUEUE_SIZE and drops the rest."""
    assert QUEUE_SIZE == 64
    service = service_factory("silent")
    notifier = DesktopNotifier(address=bus, queue_size=4, call_timeout_s=5.0)
    notifiers.append(notifier)
    assert notifier.notify(note("system", "info", "first"))
    wait_until(lambda: len(service.calls) == 1)  # the thread now waits for a reply
    started = time.monotonic()
    accepted = [notifier.notify(note("system", "info", f"n{i}")) for i in range(10)]
    assert time.monotonic() - started < 0.5
    assert accepted == [True] * 4 + [False] * 6
    assert notifier.dropped == 6
    # closing does not wait for the silent service either
    started = time.monotonic()
    notifier.close()
    assert time.monotonic() - started < 2.0
    assert notifier._thread is not None and not notifier._thread.is_alive()


def test_close_stops_the_thread(
    bus: str, service_factory: Callable[[str], FakeNotificationService]
) -> None:
    service = service_factory("accept")
    notifier = DesktopNotifier(address=bus)
    notifier.notify(note("system", "info"))
    wait_until(lambda: len(service.calls) == 1)
    thread = notifier._thread
    notifier.close()
    assert thread is not None and not thread.is_alive()
    assert notifier.notify(note("system", "info")) is False


# -- without a bus --------------------------------------------------------------


def test_no_bus_fails_nothing_and_logs_once(
    notifiers: list[DesktopNotifier],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    notifier = DesktopNotifier()
    notifiers.append(notifier)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(5):
            assert notifier.notify(note("agent_error", "error", f"n{i}"))
        wait_until(lambda: notifier.dropped == 5)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and "DBUS_SESSION_BUS_ADDRESS" in lines[0]


def test_unreachable_bus_fails_nothing_and_logs_once(
    tmp_path: Path, notifiers: list[DesktopNotifier], caplog: pytest.LogCaptureFixture
) -> None:
    notifier = DesktopNotifier(address=f"unix:path={tmp_path}/no-bus-here")
    notifiers.append(notifier)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(3):
            assert notifier.notify(note("agent_error", "error", f"n{i}"))
        wait_until(lambda: notifier.dropped == 3)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and "cannot reach the session bus" in lines[0]


def test_close_without_use() -> None:
    notifier = DesktopNotifier(address="unix:path=/nonexistent")
    notifier.close()
    assert notifier.notify(note("system", "info")) is False


# -- the message ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "variant", "urgency"),
    [
        ("agent_error", "error", 2),
        ("system", "error", 2),
        ("conflict", "warning", 1),
        ("agent_stalled", "warning", 1),
        ("approval_needed", "warning", 1),
        ("system", "warning", 1),
        ("agent_complete", "success", 0),
        ("agent_stopped", "info", 0),
        ("system", "info", 0),
        ("future_kind", "info", 0),
    ],
)
def test_urgency(kind: str, variant: str, urgency: int) -> None:
    assert urgency_of(note(kind, variant)) == urgency


def test_notify_args_cut_and_escape() -> None:
    args = notify_args(note("future_kind", "info", "a&b " + "x" * 2000))
    assert args[0] == "corral" and args[3] == "corral: api"
    assert args[4].startswith("a&amp;b x") and args[4].endswith("…")
    assert len(args[4]) <= BODY_CHARS + len("&amp;") - 1
    assert args[6]["category"] == ("s", "corral.future_kind")


# -- the settings -------------------------------------------------------------------


def test_desktop_notifications_setting() -> None:
    assert settings_mod.DEFAULTS["desktop_notifications"] == "on"
    assert settings_mod.validate("desktop_notifications", "off") == "off"
    assert settings_mod.validate("desktop_notifications", "on") == "on"
    for bad in ("", "yes", "OFF", " off"):
        with pytest.raises(InvalidParams) as info:
            settings_mod.validate("desktop_notifications", bad)
        assert info.value.field == "value"
    assert Settings(settings_mod.merged({})).desktop_notifications() is True
    assert (
        Settings(settings_mod.merged({"desktop_notifications": "off"})).desktop_notifications()
        is False
    )
    # a stored value that is no longer valid falls back to the default
    assert settings_mod.merged({"desktop_notifications": "maybe"})["desktop_notifications"] == "on"


def test_approval_timeout_setting() -> None:
    assert settings_mod.DEFAULTS["approval_timeout_ms"] == "0"
    assert settings_mod.validate("approval_timeout_ms", " 1000 ") == "1000"
    assert settings_mod.validate("approval_timeout_ms", "0") == "0"
    for bad in ("-1", "1.5", "soon", ""):
        with pytest.raises(InvalidParams):
            settings_mod.validate("approval_timeout_ms", bad)
    assert (
        Settings(settings_mod.merged({"approval_timeout_ms": "2500"})).int("approval_timeout_ms")
        == 2500
    )


def test_context_limits_in_provider_settings() -> None:
    ok = '{"ollama": {"config": {"contextLimits": {"llama3.1": 8192}}}}'
    assert settings_mod.validate("provider_settings", ok)
    for bad in (
        '{"ollama": {"config": {"contextLimits": []}}}',
        '{"ollama": {"config": {"contextLimits": {"llama3.1": 0}}}}',
        '{"ollama": {"config": {"contextLimits": {"llama3.1": "8192"}}}}',
        '{"ollama": {"config": {"contextLimits": {"llama3.1": true}}}}',
        '{"ollama": {"config": {"contextLimits": {" ": 10}}}}',
    ):
        with pytest.raises(InvalidParams) as info:
            settings_mod.validate("provider_settings", bad)
        assert "contextLimits" in str(info.value)

"""Fakes for actor unit tests (no daemon, no sockets, no processes).

* :class:`RecordingOutbox` implements ``actors.ports.Outbox``: it keeps every
  reply by its reply token and every publication with the moment it was made,
  and lets a test wait for either (bounded).
* :class:`FakeLauncher` / :class:`FakeHandle` stand in for the provider
  registry and a running provider: the test drives output and exits from its
  own thread, and may hold a launch or a prompt hand-over on a gate to keep a
  start in flight or a session actor busy.
* :class:`FakeCatalog` implements ``actors.ports.ProviderCatalog``: names,
  availability the test can switch off, and a ``providerConfig`` check.
* :class:`RegistryRig` wires a RegistryActor to a real StoreActor, a
  ReaderActor and a scheduler on a temp database, with the fakes above, and
  sends it requests exactly as the router does.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import pykka

from corral.actors import db
from corral.actors.board import SessionBoard
from corral.actors.messages import Request, Shutdown
from corral.actors.normalized import Normalized
from corral.actors.ports import Capabilities, ExitReport, LaunchRequest
from corral.actors.reader import ReaderActor, ReaderPool
from corral.actors.registry import RegistryActor
from corral.actors.scheduler import Scheduler
from corral.actors.session import SessionActor
from corral.actors.store import Drain, StoreActor
from corral.protocol import methods
from corral.protocol.errors import InvalidParams, RpcError
from corral.supervisor import dispatch

WAIT_S = 5.0
"""How long a test waits for an answer or an event before it fails."""


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate!r}")
        time.sleep(0.005)


@dataclass(frozen=True)
class Reply:
    result: Any
    error: RpcError | None


@dataclass(frozen=True)
class Published:
    event: str
    data: dict[str, Any]
    project_id: str | None
    at: float  # time.monotonic() when it was handed over


class RecordingOutbox:
    """Thread-safe record of replies (by reply token) and publications, in order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._replies: dict[Any, list[Reply]] = {}
        self.events: list[Published] = []

    def reply(self, to: Any, result: Any = None, error: RpcError | None = None) -> None:
        with self._cond:
            self._replies.setdefault(to, []).append(Reply(result, error))
            self._cond.notify_all()

    def publish(self, event: str, data: dict[str, Any], project_id: str | None = None) -> None:
        with self._cond:
            self.events.append(Published(event, data, project_id, time.monotonic()))
            self._cond.notify_all()

    def replies_to(self, to: Any) -> list[Reply]:
        with self._cond:
            return list(self._replies.get(to, []))

    def wait_reply(self, to: Any, timeout: float = WAIT_S) -> Reply:
        """The first answer to ``to`` (waiting for it up to ``timeout`` seconds)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._replies.get(to)), timeout):
                raise AssertionError(f"no reply to {to!r} within {timeout}s")
            return self._replies[to][0]

    def published(self, event: str, project_id: str | None = None) -> list[Published]:
        with self._cond:
            return [
                e
                for e in self.events
                if e.event == event and (project_id is None or e.project_id == project_id)
            ]

    def wait_published(
        self,
        event: str,
        predicate: Callable[[Published], bool] = lambda _e: True,
        timeout: float = WAIT_S,
    ) -> Published:
        """The first publication of ``event`` that satisfies ``predicate``."""

        def found() -> Published | None:
            return next((e for e in self.events if e.event == event and predicate(e)), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {event} event within {timeout}s")
            hit = found()
            assert hit is not None
            return hit


@dataclass
class FakeHandle:
    """A provider as its session sees it; the test plays the provider's side."""

    request: LaunchRequest
    prompts: list[str] = field(default_factory=list)
    stopped: bool = False
    closed: bool = False
    running: bool = True
    mid_turn: bool = True
    stop_threads: list[str] = field(default_factory=list)
    prompt_gate: threading.Event | None = None
    in_prompt: threading.Event = field(default_factory=threading.Event)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(mid_turn_prompts=self.mid_turn)

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return self.running

    def send_prompt(self, text: str) -> bool:
        if self.stopped or not self.running:
            return False
        self.prompts.append(text)
        if self.prompt_gate is not None:
            # Keeps the session actor busy until the test opens the gate.
            self.in_prompt.set()
            self.prompt_gate.wait(10)
        return True

    def stop_turn(self) -> None:
        self.stop_threads.append(threading.current_thread().name)
        self.stopped = True

    def close(self) -> None:
        self.closed = True

    def wait_exit(self, timeout: float) -> bool:
        return True

    # ---- the provider's side, driven by the test
    def emit(self, *items: Normalized) -> None:
        self.request.on_messages(list(items), lambda: None)

    def exit(self, code: int = 0, stderr: str = "") -> None:
        self.running = False
        self.request.on_exit(ExitReport(code, None, stderr, self.stopped))


class FakeLauncher:
    """Launches :class:`FakeHandle`s; :meth:`hold` keeps the next launches waiting."""

    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []
        self.requests: list[LaunchRequest] = []
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def launch(self, request: LaunchRequest) -> FakeHandle:
        self.requests.append(request)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        handle = FakeHandle(request)
        handle.prompts.append(request.prompt)
        self.handles.append(handle)
        return handle

    def hold(self) -> None:
        """From now on a launch waits (on the session's thread) until :meth:`release`."""
        self.entered.clear()
        self.gate = threading.Event()

    def release(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.gate = None


class FakeCatalog:
    """Provider names and availability as the registry asks for them."""

    CONFIG_KEYS = frozenset({"textBytes"})

    def __init__(self, names: tuple[str, ...] = ("claude", "mock")) -> None:
        self._names = names
        self.unavailable: dict[str, str] = {}
        self.asked: list[tuple[str, bool]] = []

    def names(self) -> tuple[str, ...]:
        return self._names

    def availability(
        self, name: str, settings: dict[str, str], *, probe: bool = False
    ) -> tuple[bool, str]:
        self.asked.append((name, probe))
        if name in self.unavailable:
            return False, self.unavailable[name]
        return True, f"{name} 1.0 (probed)" if probe else f"{name} found"

    def validate_config(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        for key in config:
            if key not in self.CONFIG_KEYS:
                raise InvalidParams(
                    f"unknown providerConfig key {key!r}", field=f"providerConfig.{key}"
                )
        return {**config, "checkedBy": name}


# ---------------------------------------------------------------- stored rows


def stored_row(
    session_id: str,
    project_id: str = "p",
    *,
    status: str = "done",
    age_ms: int = 0,
    last_seq: int = 0,
    provider: str = "mock",
    provider_session_id: str | None = None,
) -> dict[str, Any]:
    """A session row as the store writes it, created and updated ``age_ms`` ago."""
    at = db.now_ms() - age_ms
    return {
        "sessionId": session_id,
        "projectId": project_id,
        "provider": provider,
        "status": status,
        "model": "m-1",
        "createdAt": at,
        "updatedAt": at,
        "messageCount": last_seq,
        "lastSeqId": last_seq,
        "providerSessionId": provider_session_id,
    }


def insert_rows(path: Path, *rows: dict[str, Any], options: dict[str, Any] | None = None) -> None:
    """Store session rows directly (a second writer; WAL and the busy timeout make it safe)."""
    conn = db.connect(path)
    try:
        with conn:
            for row in rows:
                db.upsert_session(conn, row, options or {})
    finally:
        conn.close()


# ---------------------------------------------------------------- the registry rig

INFO: dict[str, Any] = {
    "version": "0.0.0-test",
    "boot": "b00t",
    "pid": 1,
    "startedAt": 0,
    "endpoints": {"rpc": "ipc://rpc", "events": "ipc://events"},
    "dataDir": "/data",
}

T = TypeVar("T")


class RegistryRig:
    """A RegistryActor with a real StoreActor, a ReaderActor and a scheduler on a
    temp database, a recording outbox, a fake launcher and a fake catalog.
    Requests go in as the router sends them: ``Request(handler, params, token, method)``
    with the handler of the dispatch table and params checked by the contract."""

    def __init__(self, tmp: Path) -> None:
        self.path = path = tmp / "corral.db"
        self.workdir = tmp / "work"  # an existing directory to use as cwd
        self.workdir.mkdir()
        db.connect(path).close()
        self.outbox = RecordingOutbox()
        self.scheduler = Scheduler()
        self.scheduler.start()
        self.store = StoreActor.start(path, self.outbox)
        self.reader_refs = [ReaderActor.start(path, self.outbox)]
        self.readers = ReaderPool(self.reader_refs)
        self.launcher = FakeLauncher()
        self.catalog = FakeCatalog()
        self._tokens = itertools.count(1)
        self.board = SessionBoard()  # what the router would answer session.get from
        self.registry = self._start_registry()

    def _start_registry(self) -> pykka.ActorRef[Any]:
        return RegistryActor.start(
            db_path=self.path,
            store=self.store,
            readers=self.readers,
            scheduler=self.scheduler,
            outbox=self.outbox,
            launcher=self.launcher,
            catalog=self.catalog,
            info=dict(INFO),
            board=self.board,
        )

    def restart_registry(self) -> None:
        """A new RegistryActor on the same database (as after a daemon restart)."""
        self.drain()
        self.registry.stop(block=True, timeout=WAIT_S)
        self.board = SessionBoard()
        self.registry = self._start_registry()

    # ---- requests
    def send(self, method: str, *, unchecked: bool = False, **params: Any) -> str:
        """Tell the registry one request; returns its reply token."""
        token = f"r{next(self._tokens)}"
        if not unchecked:
            params = methods.validate_params(method, params)
        self.registry.tell(Request(dispatch.TABLE[method].function, params, token, method))
        return token

    def call(self, method: str, **params: Any) -> Reply:
        return self.outbox.wait_reply(self.send(method, **params))

    def ok(self, method: str, **params: Any) -> Any:
        reply = self.call(method, **params)
        assert reply.error is None, f"{method} answered {reply.error!r}: {reply.error.data}"
        return reply.result

    def refused(self, method: str, **params: Any) -> RpcError:
        reply = self.call(method, **params)
        assert reply.error is not None, f"{method} answered {reply.result!r}"
        return reply.error

    def start(self, project: str = "p", prompt: str = "go", **params: Any) -> dict[str, Any]:
        params.setdefault("provider", "mock")
        params.setdefault("cwd", str(self.workdir))
        result: dict[str, Any] = self.ok("agent.start", projectId=project, prompt=prompt, **params)
        return result

    def send_start(self, project: str = "p", prompt: str = "go", **params: Any) -> str:
        params.setdefault("provider", "mock")
        return self.send("agent.start", projectId=project, prompt=prompt, **params)

    def start_error(self, project: str = "p", prompt: str = "go", **params: Any) -> RpcError:
        reply = self.outbox.wait_reply(self.send_start(project, prompt, **params))
        assert reply.error is not None, f"agent.start answered {reply.result!r}"
        return reply.error

    def on_registry(self, fn: Callable[[RegistryActor], T]) -> T:
        """Run ``fn`` on the registry's own thread (after everything told before it)."""
        box: list[Any] = []

        def handler(registry: RegistryActor, _params: dict[str, Any], _reply: Any) -> None:
            try:
                box.append(fn(registry))
            except BaseException as exc:  # handed to the test thread
                box.append(exc)

        self.registry.ask(Request(handler, {}, "on-registry", "test"), timeout=WAIT_S)
        if isinstance(box[0], BaseException):
            raise box[0]
        return cast(T, box[0])

    # ---- state
    def current(self, project: str = "p") -> tuple[str, str] | None:
        """(sessionId, cached status) of the project's live entry, or None."""

        def read(r: RegistryActor) -> tuple[str, str] | None:
            entry = r.projects.get(project)
            return (entry.session_id, entry.status) if entry is not None else None

        return self.on_registry(read)

    def wait_status(self, project: str, status: str) -> None:
        wait_until(
            lambda: (self.current(project) or ("", ""))[1] == status, what=f"{project} {status}"
        )

    def finish_turn(self, project: str = "p", handle: FakeHandle | None = None) -> None:
        (handle or self.launcher.handles[-1]).emit(Normalized("turn_end"))
        self.wait_status(project, "done")

    def pending_id(self, project: str = "p") -> str:
        """The session id of the project's start in flight."""
        return self.on_registry(lambda r: r.starting[project].session_id)

    def snapshot(self) -> tuple[Any, ...]:
        """What a refused request must leave unchanged."""
        return (
            self.on_registry(lambda r: {p: e.session_id for p, e in r.projects.items()}),
            self.on_registry(lambda r: sorted(r.starting)),
            len(self.launcher.requests),
            self.stored_ids(),
            len(self.ok("notifications.list", limit=100)["notifications"]),
            [h.closed for h in self.launcher.handles],
        )

    def drain(self) -> None:
        done = threading.Event()
        self.store.tell(Drain(then=done.set))
        assert done.wait(WAIT_S), "the store did not drain"

    def stored(self, session_id: str) -> dict[str, Any] | None:
        self.drain()
        conn = db.connect(self.path, readonly=True)
        try:
            return db.get_session(conn, session_id)
        finally:
            conn.close()

    def row(self, session_id: str) -> dict[str, Any]:
        found = self.stored(session_id)
        assert found is not None, f"session {session_id} is not stored"
        return found

    def stored_ids(self, project: str | None = None) -> set[str]:
        self.drain()
        conn = db.connect(self.path, readonly=True)
        try:
            return {s["sessionId"] for s in db.list_sessions(conn, project_id=project, limit=500)}
        finally:
            conn.close()

    def stored_settings(self) -> dict[str, str]:
        self.drain()
        conn = db.connect(self.path, readonly=True)
        try:
            return db.load_settings(conn)
        finally:
            conn.close()

    # ---- teardown
    def __enter__(self) -> RegistryRig:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.launcher.release()
        for handle in self.launcher.handles:
            if handle.prompt_gate is not None:
                handle.prompt_gate.set()
        done = threading.Event()
        with contextlib.suppress(pykka.ActorDeadError):
            self.registry.tell(Shutdown(done))
            done.wait(WAIT_S * 3)
        with contextlib.suppress(pykka.ActorDeadError):
            self.registry.stop(block=True, timeout=WAIT_S)
        # Sessions a test cut loose from the registry (it killed or forgot them).
        for ref in pykka.ActorRegistry.get_by_class(SessionActor):
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop(block=True, timeout=WAIT_S)
        self.readers.stop()
        with contextlib.suppress(pykka.ActorDeadError):
            self.store.stop(block=True, timeout=WAIT_S)
        self.scheduler.stop()

"""What every client command shares: connection options, output, errors and exit codes.

:func:`client_command` registers a function ``f(cx, ...)`` as a typer command and
adds the options every client command takes *after* its name: ``--rpc``,
``--events`` (env ``CORRAL_RPC``/``CORRAL_EVENTS``, then ``endpoints.json``, then
the default sockets), ``--timeout``, ``--json`` and, for a ``tcp://`` daemon, CURVE's
``--curve-key-file`` / ``--curve-server-key`` (env ``CORRAL_CURVE_KEY_FILE`` /
``CORRAL_CURVE_SERVER_KEY``; the server key also comes from ``endpoints.json``).
It turns what goes wrong into the exit codes scripts rely on:

====  =====================================================================
0     ok
1     the daemon answered with an error (its message and reason on stderr)
2     usage error (typer's own)
3     the daemon did not answer within ``--timeout`` (a hint on stderr)
====  =====================================================================

Human output goes through rich on a terminal; with ``NO_COLOR`` or a pipe it is
plain text without escape codes. Nothing here imports the daemon, and rich is
imported only when something is printed for people.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from corral.protocol.client import Client, Subscriber
from corral.protocol.curve import CurveError, CurveKeys
from corral.protocol.errors import RpcError
from corral.protocol.transport import DaemonUnreachable
from corral.supervisor.cli.fastparams import FastCommand

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "CommandFailed",
    "Ctx",
    "Output",
    "client_command",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

DEFAULT_TIMEOUT = 5.0
SLOW_TIMEOUT = 120.0
"""How long a call that waits for work (a start, a stop, a purge) may take once the
daemon has answered a ping."""

CONNECTION = "Connection options"

RpcOpt = Annotated[
    str | None,
    typer.Option(
        "--rpc",
        envvar="CORRAL_RPC",
        help="RPC endpoint (default: endpoints.json, then the default socket).",
        show_default=False,
        rich_help_panel=CONNECTION,
    ),
]
EventsOpt = Annotated[
    str | None,
    typer.Option(
        "--events",
        envvar="CORRAL_EVENTS",
        help="Events endpoint (default: endpoints.json, then the default socket).",
        show_default=False,
        rich_help_panel=CONNECTION,
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout",
        min=0.0,
        help="Seconds to wait for the daemon to answer before giving up (exit 3).",
        rich_help_panel=CONNECTION,
    ),
]
CurveServerKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--curve-server-key",
        envvar="CORRAL_CURVE_SERVER_KEY",
        help="The daemon's CURVE public key, Z85 (default: endpoints.json); tcp only.",
        show_default=False,
        rich_help_panel=CONNECTION,
    ),
]
CurveKeyFileOpt = Annotated[
    str | None,
    typer.Option(
        "--curve-key-file",
        envvar="CORRAL_CURVE_KEY_FILE",
        help="This client's CURVE .key_secret file (corral keys generate); tcp only.",
        show_default=False,
        rich_help_panel=CONNECTION,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print JSON (one object per line for streams).", rich_help_panel=CONNECTION
    ),
]


class CommandFailed(Exception):
    """A client-side failure to report on stderr with an exit code (default 1)."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _plain() -> bool:
    """No escape codes: ``NO_COLOR`` is set, or stdout is not a terminal (unless forced)."""
    if os.environ.get("NO_COLOR"):
        return True
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return False
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


class Output:
    """Where a command prints: JSON, rich on a terminal, or plain text."""

    def __init__(self, json: bool = False) -> None:
        self.json = json
        self.plain = _plain()
        self._console: Console | None = None
        self._err: Console | None = None

    def _make(self, stderr: bool) -> Console:
        from rich.console import Console

        if self.plain:
            width = int(os.environ.get("COLUMNS") or 0) or 160
            return Console(
                stderr=stderr,
                color_system=None,
                force_terminal=False,
                no_color=True,
                width=width,
                highlight=False,
                emoji=False,
            )
        return Console(stderr=stderr, highlight=False, emoji=False)

    @property
    def console(self) -> Console:
        """The rich console on stdout."""
        if self._console is None:
            self._console = self._make(False)
        return self._console

    @property
    def err_console(self) -> Console:
        """The rich console on stderr."""
        if self._err is None:
            self._err = self._make(True)
        return self._err

    def print(self, renderable: RenderableType) -> None:
        """A rich renderable (a table, a panel) on stdout."""
        self.console.print(renderable)

    def line(self, text: Text | str) -> None:
        """One line of text, never wrapped by us (the terminal wraps)."""
        if self.plain:
            sys.stdout.write((text if isinstance(text, str) else text.plain) + "\n")
        else:
            self.console.print(text, soft_wrap=True, markup=False)

    def flush(self) -> None:
        """Flush stdout (between the lines of a stream)."""
        if self._console is not None:
            self._console.file.flush()
        sys.stdout.flush()

    def json_doc(self, obj: Any) -> None:
        """One JSON document on stdout (indented)."""
        sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")

    def json_line(self, obj: Any) -> None:
        """One compact JSON object on a line of its own (NDJSON), flushed."""
        sys.stdout.write(orjson.dumps(obj).decode() + "\n")
        sys.stdout.flush()

    def warn(self, message: str) -> None:
        """A warning on stderr."""
        sys.stderr.write(f"corral: warning: {message}\n")

    def error(self, message: str) -> None:
        """An error on stderr."""
        sys.stderr.write(f"corral: {message}\n")


class Ctx:
    """One command's connection to the daemon (created lazily) and its output."""

    def __init__(
        self,
        rpc: str | None = None,
        events: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        json: bool = False,
        curve_server_key: str | None = None,
        curve_key_file: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.out = Output(json)
        self._rpc, self._events = rpc, events
        self._curve_options = (curve_server_key, curve_key_file)
        self._curve: tuple[CurveKeys | None] | None = None
        self._urls: tuple[str, str] | None = None
        self._client: Client | None = None
        self._subs: list[Subscriber] = []

    @property
    def json(self) -> bool:
        """``--json`` was given."""
        return self.out.json

    @property
    def urls(self) -> tuple[str, str]:
        """``(rpc, events)``: flags, env, ``endpoints.json``, defaults (contract §1)."""
        if self._urls is None:
            from corral.protocol.endpoints import resolve_client_endpoints

            self._urls = resolve_client_endpoints(self._rpc, self._events)
        return self._urls

    @property
    def curve(self) -> CurveKeys | None:
        """CURVE keys for a tcp daemon (None for ipc); a bad option exits 2."""
        if self._curve is None:
            keys = None
            if any(url.startswith("tcp://") for url in self.urls):
                from corral.protocol.curve import resolve_client_curve

                try:
                    keys = resolve_client_curve(*self._curve_options)
                except CurveError as exc:
                    raise CommandFailed(str(exc), EXIT_USAGE) from None
            self._curve = (keys,)
        return self._curve[0]

    @property
    def client(self) -> Client:
        """The RPC client (connected on first use)."""
        if self._client is None:
            self._client = Client(self.urls[0], timeout=self.timeout, curve=self.curve)
        return self._client

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, slow: bool = False
    ) -> dict[str, Any]:
        """Call ``method``. ``slow``: the daemon must answer a ping within ``--timeout``,
        the call itself may then take up to :data:`SLOW_TIMEOUT` (a stop waits for
        the turn to end). The ping travels with the call, in one round-trip."""
        if not slow:
            return self.client.call(method, params)
        client = self.client
        ping = client.submit("daemon.ping", None, self.timeout)
        rid = client.submit(method, params, self.timeout)
        client.result(ping, self.timeout, "daemon.ping")
        result: dict[str, Any] = client.result(rid, max(self.timeout, SLOW_TIMEOUT), method)
        return result

    def subscriber(self, topics: tuple[str, ...] = ("",)) -> Subscriber:
        """A subscriber on the daemon's events, closed with this context."""
        sub = Subscriber(self.urls[1], topics, curve=self.curve)
        self._subs.append(sub)
        return sub

    def close(self) -> None:
        """Close every socket this command opened."""
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        if self._client is not None:
            self._client.close()
            self._client = None


def describe_error(exc: RpcError) -> str:
    """``message (reason; field: x)`` for stderr."""
    reason = str(exc.data.get("reason", "error"))
    extra = [reason]
    for key in ("field", "detail", "sessionId"):
        value = exc.data.get(key)
        if value:
            extra.append(f"{key}: {value}")
    return f"{exc.message} ({'; '.join(extra)})"


def run_guarded(ctx: Ctx, body: Callable[[], int | None]) -> int:
    """Run a command body; map what goes wrong to an exit code and a line on stderr."""
    try:
        return body() or EXIT_OK
    except DaemonUnreachable as exc:
        ctx.out.error(
            f"cannot reach the corral daemon at {exc.url} (no answer within {exc.timeout:g}s)"
        )
        sys.stderr.write(f"{exc.hint}\n")
        if exc.url.startswith("tcp://"):
            sys.stderr.write(
                "a tcp daemon answers only CURVE clients whose key it lists: "
                "--curve-key-file (and --curve-server-key)\n"
            )
        return EXIT_UNREACHABLE
    except RpcError as exc:
        ctx.out.error(describe_error(exc))
        return EXIT_ERROR
    except CommandFailed as exc:
        ctx.out.error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    finally:
        ctx.close()


def _quiet_stdout() -> None:
    """After a closed pipe (``corral show p | head``): drop what is still buffered."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


_COMMON = (
    inspect.Parameter("rpc", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=RpcOpt),
    inspect.Parameter("events", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=EventsOpt),
    inspect.Parameter(
        "timeout", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_TIMEOUT, annotation=TimeoutOpt
    ),
    inspect.Parameter(
        "json_output", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt
    ),
    inspect.Parameter(
        "curve_server_key",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=CurveServerKeyOpt,
    ),
    inspect.Parameter(
        "curve_key_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=CurveKeyFileOpt
    ),
)


def client_command(
    app: typer.Typer, name: str | None = None, *, panel: str | None = None
) -> Callable[[Callable[..., int | None]], Callable[..., int | None]]:
    """Register ``f(cx: Ctx, ...)`` as the command ``name`` with the connection options.

    ``f``'s docstring is the command's help; it returns an exit code (None for 0).
    """

    def decorate(fn: Callable[..., int | None]) -> Callable[..., int | None]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "cx"]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> None:
            ctx = Ctx(
                kwargs.pop("rpc"),
                kwargs.pop("events"),
                kwargs.pop("timeout"),
                kwargs.pop("json_output"),
                kwargs.pop("curve_server_key"),
                kwargs.pop("curve_key_file"),
            )
            code = run_guarded(ctx, lambda: fn(ctx, **kwargs))
            if code:
                raise typer.Exit(code)

        params = [*own, *_COMMON]
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined,unused-ignore]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__
        app.command(name or fn.__name__.replace("_", "-"), cls=FastCommand, rich_help_panel=panel)(
            command
        )
        return fn

    return decorate


def iter_pages(
    client: Client, session_id: str, after: int = 0, limit: int | None = None, page: int = 500
) -> Iterator[dict[str, Any]]:
    """A session's stored messages after seqId ``after``, page by page (at most ``limit``)."""
    left = limit
    while left is None or left > 0:
        size = page if left is None else min(page, left)
        got = client.messages(session_id, after_seq=after, limit=size)
        messages = got.get("messages", [])
        yield from messages
        if left is not None:
            left -= len(messages)
        if not got.get("hasMore") or not messages:
            return
        after = messages[-1]["seqId"]

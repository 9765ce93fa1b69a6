"""`corral demo`: a daemon, a simulated agent and its transcript, live.

Starts a daemon on a temporary runtime dir, runs a `mock` session with tool
calls and a follow-up prompt, and renders every `agent.message` event with
rich as it arrives. Ends with a summary: cost, tokens, messages, and where the
database is.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from corral.protocol.client import Subscriber
from corral.supervisor.background import DaemonProcess

PROJECT = "demo"
APPROVAL_PROJECT = "demo-approval"
PROMPTS = (
    "Add a --verbose flag to the CLI and cover it with a test",
    "Now document the flag in the README",
)
ROLE_STYLE = {
    "user": ("you", "bold cyan"),
    "assistant": ("agent", "green"),
    "thinking": ("thinking", "dim italic"),
    "tool-call": ("tool", "yellow"),
    "tool-result": ("result", "dim"),
    "system": ("system", "magenta"),
}


def render(console: Console, message: dict[str, Any]) -> None:
    label, style = ROLE_STYLE.get(message["role"], (message["role"], ""))
    content = str(message.get("content", ""))
    if message["role"] == "tool-call":
        target = message.get("toolPath") or " ".join(content.split())
        content = f"{message.get('toolName', '?')}  {target}"
    elif message["role"] == "tool-result":
        lines = content.splitlines()
        content = "\n".join(lines[:4]) + (
            f"\n… ({len(lines) - 4} more lines)" if len(lines) > 4 else ""
        )
    line = Text()
    line.append(f"{message['seqId']:>3} ", style="dim")
    line.append(f"{label:>8} ", style=style)
    line.append(content, style="" if message["role"] in ("assistant", "user") else style)
    console.print(line)


def stream_turn(
    console: Console, sub: Subscriber, session_id: str, shown: set[int], timeout: float = 120.0
) -> str:
    """Print messages until the session leaves `running`; return the final status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sub.recv(0.5)
        if got is None:
            continue
        _topic, frame = got
        data = frame.get("data", {})
        if data.get("sessionId") != session_id:
            continue
        if frame["event"] == "agent.message":
            for message in data["messages"]:
                if message["seqId"] not in shown:
                    shown.add(message["seqId"])
                    render(console, message)
        elif frame["event"] == "agent.status" and data["status"] in ("done", "error"):
            return str(data["status"])
    return "timeout"


def run_demo(*, keep: bool = True, delay_ms: int = 120) -> int:
    console = Console()
    base = Path(tempfile.mkdtemp(prefix="corral-demo-"))
    daemon = DaemonProcess(base / "run" / "corral", base / "data")
    console.print(
        Panel.fit(
            "corral demo: a daemon, a simulated coding agent (provider [bold]mock[/]) "
            "and its transcript, streamed over ZeroMQ as it is committed to SQLite.",
            border_style="cyan",
        )
    )
    try:
        with console.status("starting the daemon…"):
            daemon.start()
        console.print(f"daemon pid {daemon.pid} on [dim]{daemon.rpc_url}[/]")
        with (
            daemon.client() as client,
            Subscriber(
                daemon.events_url, [f"project/{PROJECT}/", f"project/{APPROVAL_PROJECT}/"]
            ) as sub,
        ):
            sub.wait_connected(client, timeout=5.0)
            config = {"toolCalls": 2, "delayMs": delay_ms, "textBytes": 160}
            workdir = base / "project"
            workdir.mkdir()
            started = client.call(
                "agent.start",
                {
                    "projectId": PROJECT,
                    "provider": "mock",
                    "prompt": PROMPTS[0],
                    "cwd": str(workdir),
                    "providerConfig": config,
                },
            )
            session_id = started["sessionId"]
            console.rule(f"session {session_id[:8]} · model {started.get('model') or 'mock'}")
            shown: set[int] = set()
            status = stream_turn(console, sub, session_id, shown)
            if status == "done":
                console.rule("follow-up prompt")
                client.call("agent.prompt", {"projectId": PROJECT, "prompt": PROMPTS[1]})
                status = stream_turn(console, sub, session_id, shown)
            # Resync (contract promise 2): anything the subscriber missed.
            missed = client.call("session.messages.load", {"sessionId": session_id})
            for message in missed["messages"]:
                if message["seqId"] not in shown:
                    shown.add(message["seqId"])
                    render(console, message)
            session = client.call("session.get", {"projectId": PROJECT})["session"]
            summary(console, session, daemon.data_dir / "corral.db", status, kept=keep)
            health = client.call("health.get", {"projectId": PROJECT})["projects"][0]
            console.print(health_line(health))
            if status == "done":
                status = approval_round(console, client, sub, workdir, delay_ms)
        return 0 if status == "done" else 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        log = daemon.log_tail()
        if log:
            console.print(Panel(log, title="daemon log", border_style="red"))
        return 1
    finally:
        daemon.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def approval_round(
    console: Console, client: Any, sub: Subscriber, workdir: Path, delay_ms: int
) -> str:
    """A second agent asks before a risky command; the demo grants it as a person would."""
    console.rule("an approval")
    tools = [{"name": "Bash", "input": {"command": "rm -rf build/"}, "ask": True}]
    started = client.call(
        "agent.start",
        {
            "projectId": APPROVAL_PROJECT,
            "provider": "mock",
            "prompt": "Clean the build directory",
            "cwd": str(workdir),
            "permissionMode": "default",
            "providerConfig": {"delayMs": delay_ms, "tools": tools},
        },
    )
    _topic, frame = sub.wait_for(
        lambda _t, f: (
            f["event"] == "approval.requested" and f["data"]["sessionId"] == started["sessionId"]
        ),
        60,
    )
    approval = frame["data"]
    console.print(f"[yellow]approval requested:[/] {approval['summary']}")
    client.call(
        "agent.approve",
        {"projectId": APPROVAL_PROJECT, "approvalId": approval["approvalId"], "decision": "allow"},
    )
    console.print("[green]allowed[/] (corral approve " + APPROVAL_PROJECT + ")")
    # wait for the turn's end quietly, then show its whole transcript in order
    status = stream_turn(Console(quiet=True), sub, started["sessionId"], set())
    page = client.call("session.messages.load", {"sessionId": started["sessionId"]})
    for message in page["messages"]:
        render(console, message)
    return status


def health_line(health: dict[str, Any]) -> str:
    """One line of the project's Health: activity, cost, burn rate, context, attention."""
    attention = health["attention"]
    line = (
        f"health · {health['activity']} · ${health['costUsd']:.4f} · "
        f"${health['burnRateUsdPerHour']:.2f}/h · "
        f"{health['toolCalls']['finished']}/{health['toolCalls']['started']} tool calls · "
        f"context {health['contextPressure'] * 100:.1f}% of {health['contextLimit']}"
    )
    if attention["score"]:
        line += f" · attention {attention['score']}: {attention['reason']}"
    return line


def summary(
    console: Console,
    session: dict[str, Any] | None,
    db_path: Path,
    status: str,
    *,
    kept: bool = True,
) -> None:
    table = Table(title="summary", show_header=False, border_style="cyan")
    table.add_column(style="bold")
    table.add_column()
    if session is not None:
        table.add_row("status", status)
        table.add_row("cost", f"${session['costUsd']:.4f}")
        table.add_row("tokens", f"{session['inputTokens']} in / {session['outputTokens']} out")
        table.add_row("messages", str(session["messageCount"]))
    table.add_row("database", str(db_path) if kept else f"{db_path} (removed: --no-keep)")
    console.print(table)

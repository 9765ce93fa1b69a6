"""Where the daemon listens and keeps its data; shared by the daemon and clients.

Defaults: sockets in the runtime directory (``$XDG_RUNTIME_DIR/corral``, else
``/tmp/corral-$UID``, mode 0700: the directory is the access control), data in
``$XDG_DATA_HOME/corral`` (else ``~/.local/share/corral``). The daemon writes a
discovery file ``endpoints.json`` in the runtime directory while it runs.
Relative ``XDG_*`` values are ignored, as the XDG base directory spec asks.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DISCOVERY_FILE",
    "EndpointError",
    "default_data_dir",
    "default_events_url",
    "default_rpc_url",
    "default_runtime_dir",
    "ensure_private_dir",
    "ensure_runtime_dir",
    "ipc_socket_path",
    "prepare_socket_dir",
    "read_discovery",
    "remove_discovery",
    "resolve_client_endpoints",
    "resolve_data_dir",
    "write_discovery",
]

DISCOVERY_FILE = "endpoints.json"
RPC_SOCKET = "rpc.sock"
EVENTS_SOCKET = "events.sock"
DB_FILE = "corral.db"


def _abs_env(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name)
    if value and os.path.isabs(value):
        return Path(value)
    return None


def default_runtime_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_RUNTIME_DIR/corral``, else ``/tmp/corral-$UID``."""
    base = _abs_env(env, "XDG_RUNTIME_DIR")
    if base is not None:
        return base / "corral"
    return Path(f"/tmp/corral-{os.getuid()}")


def default_rpc_url(runtime_dir: Path | str) -> str:
    """``ipc://<runtime_dir>/rpc.sock``."""
    return f"ipc://{Path(runtime_dir) / RPC_SOCKET}"


def default_events_url(runtime_dir: Path | str) -> str:
    """``ipc://<runtime_dir>/events.sock``."""
    return f"ipc://{Path(runtime_dir) / EVENTS_SOCKET}"


class EndpointError(ValueError):
    """An endpoint corral refuses to listen on; the message says why and what to use."""


def ipc_socket_path(url: str) -> Path | None:
    """The socket path of an ``ipc://`` URL; None for any other transport.

    Refuses (:class:`EndpointError`) what no directory can protect: an abstract
    socket (``ipc://@name``: every local user can connect, file permissions do
    not apply) and a relative or wildcard path (it would depend on the daemon's
    working directory).
    """
    if not url.startswith("ipc://"):
        return None
    raw = url[len("ipc://") :]
    if raw.startswith(("@", "\x00")):
        raise EndpointError(
            f"refusing {url}: an abstract socket can be reached by every local user "
            "(no file permissions apply); use an absolute path, e.g. "
            "ipc://$XDG_RUNTIME_DIR/corral/rpc.sock"
        )
    if "\x00" in raw or not os.path.isabs(raw):
        raise EndpointError(
            f"refusing {url}: an ipc endpoint must be an absolute path (ipc:///dir/rpc.sock)"
        )
    return Path(raw)


def prepare_socket_dir(url: str) -> Path | None:
    """Make the directory of an ``ipc://`` endpoint ready and return it (None: not ipc).

    A missing directory (with its missing parents) is created with mode 0700: it
    is corral's own. An existing one is used as it is and never chmodded; it is
    refused (:class:`EndpointError`) when it cannot protect the socket: a
    symlink or not a directory, owned by another user, or writable by its group
    or by others (anyone could replace the socket).
    """
    path = ipc_socket_path(url)
    if path is None:
        return None
    directory = path.parent
    missing: list[Path] = []
    probe = directory
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:
            continue  # made by someone else meanwhile: checked below like any existing one
        os.chmod(created, 0o700)  # the umask may have taken bits away
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise EndpointError(f"refusing {url}: {directory} is not a plain directory")
    if st.st_uid != os.getuid():
        raise EndpointError(
            f"refusing {url}: {directory} belongs to uid {st.st_uid}; "
            "the socket needs a directory of this user's own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EndpointError(
            f"refusing {url}: {directory} is writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}), so anyone could replace the socket; "
            "use a directory of your own, or a path that does not exist yet "
            "(corral creates it with mode 0700)"
        )
    return directory


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_DATA_HOME/corral``, else ``$HOME/.local/share/corral``."""
    base = _abs_env(env, "XDG_DATA_HOME")
    if base is not None:
        return base / "corral"
    home = _abs_env(env, "HOME") or Path.home()
    return home / ".local" / "share" / "corral"


def resolve_data_dir(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
    configured: str | os.PathLike[str] | None = None,
) -> Path:
    """The data directory: explicit flag, then ``CORRAL_DATA_DIR``, then config, then default."""
    for candidate in (explicit, env.get("CORRAL_DATA_DIR"), configured):
        if candidate:
            return Path(candidate).expanduser()
    return default_data_dir(env)


def ensure_private_dir(path: Path | str) -> Path:
    """Create ``path`` (and parents) with mode 0700, or tighten an existing one to 0700.

    Refuses (PermissionError) a symlink or a directory owned by another user:
    such a directory could not serve as access control.
    """
    p = Path(path)
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{p} is not a plain directory")
    if st.st_uid != os.getuid():
        raise PermissionError(f"{p} is owned by uid {st.st_uid}, not by this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(p, 0o700)
    return p


class UnsafeDirectory(PermissionError):
    """A socket directory that cannot serve as access control; the message says how to fix it."""


def ensure_runtime_dir(path: Path | str, uid: int | None = None) -> Path:
    """The directory of the daemon's ipc sockets and ``endpoints.json``, made safe.

    Created with mode 0700 when missing (an existing one with read or execute bits
    for others is tightened to 0700). Refused (:class:`UnsafeDirectory`, saying
    which problem and how to fix it) when it cannot be created, is not a plain
    directory, is owned by another user than ``uid`` (default: this process's), or
    is group- or world-writable: anyone who can write there can replace the sockets.
    """
    p = Path(path)
    uid = os.getuid() if uid is None else uid
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # not a directory: reported below
    except OSError as exc:
        raise UnsafeDirectory(
            f"cannot create the runtime directory {p}: {exc.strerror or exc}; "
            "choose another with XDG_RUNTIME_DIR or --rpc/--events ipc://DIR/..."
        ) from None
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(
            f"the runtime directory {p} is not a plain directory (a symlink or a file); "
            "remove it, or choose another directory"
        )
    if st.st_uid != uid:
        raise UnsafeDirectory(
            f"the runtime directory {p} is owned by uid {st.st_uid}, not by this user "
            f"(uid {uid}), so it cannot keep other users out; remove it (as its owner), "
            "or choose another directory"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UnsafeDirectory(
            f"the runtime directory {p} is group- or world-writable (mode {mode:04o}): others "
            f"could replace the daemon's sockets; fix it with: chmod 700 {p}"
        )
    if mode != 0o700:
        os.chmod(p, 0o700)
    return p


def read_discovery(runtime_dir: Path | str) -> dict[str, Any] | None:
    """The daemon's discovery file, or None when absent or unreadable.

    ``{"rpc", "events", "pid", "boot", "version", "curveServerKey"}``.
    """
    try:
        raw = (Path(runtime_dir) / DISCOVERY_FILE).read_bytes()
        doc = json.loads(raw)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    return doc


def write_discovery(runtime_dir: Path | str, info: Mapping[str, Any]) -> Path:
    """Atomically write the discovery file (mode 0600); returns its path."""
    d = Path(runtime_dir)
    target = d / DISCOVERY_FILE
    tmp = d / f".{DISCOVERY_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(info), f)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def remove_discovery(runtime_dir: Path | str, pid: int | None = None) -> bool:
    """Remove the discovery file; with ``pid``, only if that process wrote it."""
    if pid is not None:
        doc = read_discovery(runtime_dir)
        if doc is None or doc.get("pid") != pid:
            return False
    try:
        (Path(runtime_dir) / DISCOVERY_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def resolve_client_endpoints(
    rpc: str | None = None,
    events: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> tuple[str, str]:
    """Endpoints a client connects to: explicit, then ``CORRAL_RPC``/``CORRAL_EVENTS``,
    then the discovery file, then the defaults. Each endpoint is resolved on its own."""
    rpc = rpc or env.get("CORRAL_RPC") or None
    events = events or env.get("CORRAL_EVENTS") or None
    if rpc and events:
        return rpc, events
    runtime_dir = default_runtime_dir(env)
    found = read_discovery(runtime_dir) or {}
    disc_rpc = found.get("rpc")
    disc_events = found.get("events")
    if not rpc:
        rpc = disc_rpc if isinstance(disc_rpc, str) and disc_rpc else default_rpc_url(runtime_dir)
    if not events:
        events = (
            disc_events
            if isinstance(disc_events, str) and disc_events
            else default_events_url(runtime_dir)
        )
    return rpc, events

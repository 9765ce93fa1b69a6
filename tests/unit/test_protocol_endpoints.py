"""Tests of endpoint/data-dir defaults, discovery and precedence (protocol.endpoints)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from corral.protocol.endpoints import (
    DISCOVERY_FILE,
    EndpointError,
    default_data_dir,
    default_events_url,
    default_rpc_url,
    default_runtime_dir,
    ensure_private_dir,
    ipc_socket_path,
    prepare_socket_dir,
    read_discovery,
    remove_discovery,
    resolve_client_endpoints,
    resolve_data_dir,
    write_discovery,
)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_runtime_dir_defaults(tmp_path: Path) -> None:
    assert default_runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "corral"
    assert default_runtime_dir({}) == Path(f"/tmp/corral-{os.getuid()}")
    assert default_runtime_dir({"XDG_RUNTIME_DIR": ""}) == Path(f"/tmp/corral-{os.getuid()}")
    # a relative XDG value is ignored
    assert default_runtime_dir({"XDG_RUNTIME_DIR": "rel"}) == Path(f"/tmp/corral-{os.getuid()}")


def test_urls(tmp_path: Path) -> None:
    assert default_rpc_url(tmp_path) == f"ipc://{tmp_path}/rpc.sock"
    assert default_events_url(str(tmp_path)) == f"ipc://{tmp_path}/events.sock"


def test_data_dir(tmp_path: Path) -> None:
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "corral"
    assert default_data_dir({"HOME": str(tmp_path)}) == tmp_path / ".local/share/corral"
    env = {"HOME": str(tmp_path), "CORRAL_DATA_DIR": str(tmp_path / "env")}
    assert resolve_data_dir("/flag", env, "/cfg") == Path("/flag")
    assert resolve_data_dir(None, env, "/cfg") == tmp_path / "env"
    assert resolve_data_dir(None, {"HOME": str(tmp_path)}, "/cfg") == Path("/cfg")
    assert resolve_data_dir(None, {"HOME": str(tmp_path)}) == tmp_path / ".local/share/corral"


def test_ensure_private_dir_creates_and_fixes_mode(tmp_path: Path) -> None:
    new = tmp_path / "a" / "corral"
    assert ensure_private_dir(new) == new
    assert mode(new) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    ensure_private_dir(loose)
    assert mode(loose) == 0o700
    ensure_private_dir(loose)  # idempotent
    assert mode(loose) == 0o700


def test_ensure_private_dir_refuses_symlink_and_file(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(PermissionError):
        ensure_private_dir(link)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OSError):
        ensure_private_dir(f)


def test_discovery_roundtrip(tmp_path: Path) -> None:
    assert read_discovery(tmp_path) is None
    info = {
        "rpc": "ipc://r",
        "events": "ipc://e",
        "pid": 42,
        "boot": "b",
        "version": "0.1.0",
        "curveServerKey": None,
    }
    path = write_discovery(tmp_path, info)
    assert path == tmp_path / DISCOVERY_FILE
    assert mode(path) == 0o600
    assert read_discovery(tmp_path) == info
    assert remove_discovery(tmp_path, pid=41) is False
    assert path.exists()
    assert remove_discovery(tmp_path, pid=42) is True
    assert not path.exists()
    assert remove_discovery(tmp_path) is False


def test_bad_discovery_is_ignored(tmp_path: Path) -> None:
    (tmp_path / DISCOVERY_FILE).write_text("{not json")
    assert read_discovery(tmp_path) is None
    (tmp_path / DISCOVERY_FILE).write_text("[1]")
    assert read_discovery(tmp_path) is None


def test_client_endpoint_precedence(tmp_path: Path) -> None:
    env: dict[str, str] = {"XDG_RUNTIME_DIR": str(tmp_path)}
    rd = tmp_path / "corral"
    # defaults
    assert resolve_client_endpoints(None, None, env) == (
        f"ipc://{rd}/rpc.sock",
        f"ipc://{rd}/events.sock",
    )
    # discovery beats defaults
    rd.mkdir()
    (rd / DISCOVERY_FILE).write_text(json.dumps({"rpc": "ipc://d/r", "events": "ipc://d/e"}))
    assert resolve_client_endpoints(None, None, env) == ("ipc://d/r", "ipc://d/e")
    # env beats discovery, each endpoint on its own
    env["CORRAL_RPC"] = "ipc://env/r"
    assert resolve_client_endpoints(None, None, env) == ("ipc://env/r", "ipc://d/e")
    env["CORRAL_EVENTS"] = "ipc://env/e"
    assert resolve_client_endpoints(None, None, env) == ("ipc://env/r", "ipc://env/e")
    # explicit beats env
    assert resolve_client_endpoints("tcp://127.0.0.1:1", None, env) == (
        "tcp://127.0.0.1:1",
        "ipc://env/e",
    )
    assert resolve_client_endpoints("ipc://x", "ipc://y", env) == ("ipc://x", "ipc://y")
    # a discovery file with junk values falls back to the defaults
    (rd / DISCOVERY_FILE).write_text(json.dumps({"rpc": 5}))
    assert resolve_client_endpoints(None, None, {"XDG_RUNTIME_DIR": str(tmp_path)}) == (
        f"ipc://{rd}/rpc.sock",
        f"ipc://{rd}/events.sock",
    )


# --- ipc endpoint paths and their directories ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ipc://@corral",
        "ipc://\x00corral",
        "ipc://rpc.sock",
        "ipc://run/rpc.sock",
        "ipc://*",
        "ipc://",
    ],
)
def test_abstract_and_relative_ipc_endpoints_are_refused(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    os.chmod(tmp_path, 0o755)
    with pytest.raises(EndpointError) as info:
        ipc_socket_path(url)
    assert url in str(info.value)
    assert ("abstract" in str(info.value)) == url.startswith(("ipc://@", "ipc://\x00"))
    with pytest.raises(EndpointError):
        prepare_socket_dir(url)
    assert mode(tmp_path) == 0o755  # the working directory is never touched
    assert os.listdir(tmp_path) == []


def test_non_ipc_endpoints_have_no_socket_dir(tmp_path: Path) -> None:
    assert ipc_socket_path("tcp://127.0.0.1:5555") is None
    assert prepare_socket_dir("tcp://127.0.0.1:5555") is None
    assert ipc_socket_path(f"ipc://{tmp_path}/r.sock") == tmp_path / "r.sock"


def test_socket_dir_created_with_its_parents_0700(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    old_umask = os.umask(0o277)  # a umask that would leave the owner no write bit
    try:
        assert prepare_socket_dir(f"ipc://{base}/a/b/rpc.sock") == base / "a" / "b"
    finally:
        os.umask(old_umask)
    assert mode(base / "a") == 0o700
    assert mode(base / "a" / "b") == 0o700
    assert mode(base) == 0o755  # existing: left alone
    # again: it exists now and is ours and private
    assert prepare_socket_dir(f"ipc://{base}/a/b/events.sock") == base / "a" / "b"


def test_existing_socket_dir_is_never_chmodded(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    assert prepare_socket_dir(f"ipc://{shared}/rpc.sock") == shared
    assert mode(shared) == 0o755
    for loose in (0o777, 0o1777, 0o775, 0o757):
        os.chmod(shared, loose)
        with pytest.raises(EndpointError) as info:
            prepare_socket_dir(f"ipc://{shared}/rpc.sock")
        assert str(shared) in str(info.value) and "writable by other users" in str(info.value)
        assert stat.S_IMODE(os.stat(shared).st_mode) == loose


def test_socket_dir_symlink_or_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(EndpointError, match="not a plain directory"):
        prepare_socket_dir(f"ipc://{tmp_path}/link/rpc.sock")
    (tmp_path / "file").write_text("x")
    with pytest.raises(EndpointError, match="not a plain directory"):
        prepare_socket_dir(f"ipc://{tmp_path}/file/rpc.sock")


def test_socket_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("making a directory of another user needs root")
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    with pytest.raises(EndpointError, match="uid 65534"):
        prepare_socket_dir(f"ipc://{other}/rpc.sock")
    assert mode(other) == 0o700

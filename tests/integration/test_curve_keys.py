"""Which CURVE keys a client uses (flags, env, endpoints.json), the daemon's authorized
keys directory, and the refusal log's throttle; no daemon needed."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import zmq
import zmq.auth

from corral.protocol.curve import (
    FROM_ENV,
    CurveError,
    CurveKeys,
    client_curve,
    load_client_curve,
    resolve_client_curve,
)
from corral.supervisor.curve import AuthorizedKeys, CurveSetupError, RefusalLog, load_server_keys


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    for name in ("server", "client"):
        zmq.auth.create_certificates(tmp_path, name)
        os.chmod(tmp_path / f"{name}.key_secret", 0o600)
    return tmp_path


def key(path: Path) -> bytes:
    return zmq.auth.load_certificate(path)[0]


def test_no_key_file_means_plain(certs: Path) -> None:
    assert resolve_client_curve(env={}, discovery={}) is None
    with pytest.raises(CurveError, match="without a client key file"):
        resolve_client_curve(server_key=key(certs / "server.key").decode(), env={})


def test_explicit_then_env_then_discovery(certs: Path) -> None:
    server = key(certs / "server.key").decode()
    client_public, client_secret = zmq.auth.load_certificate(certs / "client.key_secret")
    expected = CurveKeys(server.encode(), client_public, client_secret or b"")
    secret_file = str(certs / "client.key_secret")
    assert resolve_client_curve(server, secret_file, env={}) == expected
    env = {"CORRAL_CURVE_SERVER_KEY": server, "CORRAL_CURVE_KEY_FILE": secret_file}
    assert resolve_client_curve(env=env) == expected
    assert (
        resolve_client_curve(
            env={"CORRAL_CURVE_KEY_FILE": secret_file}, discovery={"curveServerKey": server}
        )
        == expected
    )
    with pytest.raises(CurveError, match="no CURVE server key"):
        resolve_client_curve(key_file=secret_file, env={}, discovery={"curveServerKey": None})


def test_discovery_is_read_from_the_runtime_dir(certs: Path, tmp_path: Path) -> None:
    from corral.protocol.endpoints import write_discovery

    runtime = tmp_path / "run" / "corral"
    runtime.mkdir(parents=True)
    server = key(certs / "server.key").decode()
    write_discovery(runtime, {"rpc": "tcp://127.0.0.1:1", "curveServerKey": server})
    env = {
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "CORRAL_CURVE_KEY_FILE": str(certs / "client.key_secret"),
    }
    keys = resolve_client_curve(env=env)
    assert keys is not None and keys.server_key == server.encode()


def test_bad_keys_are_named(certs: Path) -> None:
    server = key(certs / "server.key").decode()
    with pytest.raises(CurveError, match="holds no secret key"):
        load_client_curve(server, certs / "client.key")
    with pytest.raises(CurveError, match="cannot read the CURVE key file"):
        load_client_curve(server, certs / "missing.key_secret")
    with pytest.raises(CurveError, match="40 Z85 characters, got 5"):
        load_client_curve("short", certs / "client.key_secret")
    with pytest.raises(CurveError, match="not a Z85-encoded key"):
        load_client_curve("~" * 40, certs / "client.key_secret")


def test_client_curve_applies_to_tcp_only(certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_CURVE_KEY_FILE", str(certs / "client.key_secret"))
    monkeypatch.setenv("CORRAL_CURVE_SERVER_KEY", key(certs / "server.key").decode())
    assert client_curve("ipc:///tmp/x/rpc.sock", FROM_ENV) is None
    found = client_curve("tcp://127.0.0.1:5", FROM_ENV)
    assert isinstance(found, CurveKeys)
    assert client_curve("tcp://127.0.0.1:5", None) is None


def test_authorized_keys_follow_the_directory(certs: Path, tmp_path: Path) -> None:
    authorized = tmp_path / "authorized"
    keys = AuthorizedKeys(authorized)
    client = key(certs / "client.key")
    assert client not in keys  # no directory yet: nobody
    authorized.mkdir()
    shutil.copyfile(certs / "client.key", authorized / "client.key")
    assert client in keys
    (authorized / "notes.txt").write_text("ignored: not a .key file")
    (authorized / "broken.key").write_text("not a certificate")
    assert keys.keys() == frozenset({client})
    (authorized / "client.key").unlink()
    assert client not in keys


def test_server_keys_need_a_private_secret(certs: Path, tmp_path: Path) -> None:
    public, secret = load_server_keys(certs)
    assert public == key(certs / "server.key") and secret
    with pytest.raises(CurveSetupError, match="corral keys generate --dir"):
        load_server_keys(tmp_path / "nothing")
    os.chmod(certs / "server.key_secret", 0o640)
    with pytest.raises(CurveSetupError, match="chmod 600"):
        load_server_keys(certs)
    os.chmod(certs / "server.key_secret", 0o600)
    shutil.copyfile(certs / "server.key", certs / "server.key_secret")
    with pytest.raises(CurveSetupError, match="holds no secret key"):
        load_server_keys(certs)


def test_refusal_log_is_throttled(caplog: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog(interval=60)
    with caplog.at_level(logging.WARNING, logger="corral.curve"):
        assert refusals.refused("first", now=1000.0) is True
        assert [refusals.refused(f"r{i}", now=1000.0 + i) for i in range(1, 5)] == [False] * 4
        assert refusals.refused("later", now=1061.0) is True
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "refused a client: first",
        "refused a client: later (4 more refused in the last 60s)",
    ]
    assert refusals.total == 6


def test_zmq_has_curve() -> None:
    assert zmq.has("curve")

"""CURVE for clients: which keys a client uses on a ``tcp://`` endpoint, and setting them.

A daemon serving tcp is a CURVE server (ZeroMQ's CurveZMQ, keys in pyzmq's
certificate format, see ``zmq.auth``). A client needs the daemon's public key
and a key pair of its own whose public half the daemon lists as authorized:

- the server key (Z85, 40 characters): given explicitly, else
  ``CORRAL_CURVE_SERVER_KEY``, else ``curveServerKey`` of ``endpoints.json``;
- the client key pair: a ``.key_secret`` certificate file given explicitly, else
  ``CORRAL_CURVE_KEY_FILE``.

CURVE applies only to ``tcp://`` endpoints (ipc relies on its 0700 directory);
a client without a key file talks plain ZeroMQ and a CURVE daemon ignores it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import zmq

__all__ = [
    "FROM_ENV",
    "CurveError",
    "CurveKeys",
    "CurveOption",
    "apply_client_curve",
    "client_curve",
    "load_client_curve",
    "resolve_client_curve",
]

FROM_ENV: Literal["env"] = "env"
"""A client's default ``curve``: keys from the environment and ``endpoints.json``."""

SERVER_KEY_ENV = "CORRAL_CURVE_SERVER_KEY"
KEY_FILE_ENV = "CORRAL_CURVE_KEY_FILE"
Z85_KEY_LENGTH = 40


class CurveError(ValueError):
    """The CURVE options cannot be used; the message says which and why."""


@dataclass(frozen=True)
class CurveKeys:
    """What a CURVE client sets on its socket (all three Z85-encoded)."""

    server_key: bytes
    public_key: bytes
    secret_key: bytes


def check_z85_key(value: str | bytes, what: str) -> bytes:
    """``value`` as a Z85 CURVE key (40 characters), else CurveError naming ``what``."""
    raw = value.encode() if isinstance(value, str) else value
    raw = raw.strip()
    if len(raw) != Z85_KEY_LENGTH:
        raise CurveError(f"{what}: a CURVE key is {Z85_KEY_LENGTH} Z85 characters, got {len(raw)}")
    try:
        from zmq.utils import z85

        z85.decode(raw)
    except (ValueError, KeyError, UnicodeDecodeError):
        raise CurveError(f"{what}: not a Z85-encoded key") from None
    return raw


def load_key_pair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """(public, secret) of a ``.key_secret`` certificate file, else CurveError."""
    from zmq.auth.certs import load_certificate

    try:
        public, secret = load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveError(f"cannot read the CURVE key file {path}: {exc}") from None
    if not secret:
        raise CurveError(
            f"{path} holds no secret key: give the client's .key_secret file, not its .key"
        )
    return (
        check_z85_key(public, f"public key of {path}"),
        check_z85_key(secret, f"secret key of {path}"),
    )


def load_client_curve(server_key: str | bytes, key_file: str | os.PathLike[str]) -> CurveKeys:
    """Keys from an explicit server key and client key file (CurveError if unusable)."""
    public, secret = load_key_pair(key_file)
    return CurveKeys(check_z85_key(server_key, "the CURVE server key"), public, secret)


def resolve_client_curve(
    server_key: str | None = None,
    key_file: str | None = None,
    env: Mapping[str, str] | None = None,
    discovery: Mapping[str, Any] | None = None,
) -> CurveKeys | None:
    """The client's CURVE keys, or None when no key file is configured.

    ``discovery`` is the daemon's ``endpoints.json`` (read from the default runtime
    directory when not given and a server key is still missing).
    """
    env = os.environ if env is None else env
    key_file = key_file or env.get(KEY_FILE_ENV) or None
    server_key = server_key or env.get(SERVER_KEY_ENV) or None
    if key_file is None:
        if server_key is not None:
            raise CurveError(
                "a CURVE server key was given without a client key file "
                f"(--curve-key-file or {KEY_FILE_ENV}: the client's .key_secret)"
            )
        return None
    if server_key is None:
        if discovery is None:
            from corral.protocol.endpoints import default_runtime_dir, read_discovery

            discovery = read_discovery(default_runtime_dir(env)) or {}
        found = discovery.get("curveServerKey")
        if isinstance(found, str) and found:
            server_key = found
    if server_key is None:
        raise CurveError(
            "no CURVE server key: pass --curve-server-key (or set "
            f"{SERVER_KEY_ENV}); endpoints.json has none"
        )
    return load_client_curve(server_key, Path(key_file).expanduser())


CurveOption = CurveKeys | None | Literal["env"]
"""What a client takes as ``curve``: keys, None (plain), or :data:`FROM_ENV`."""


def client_curve(url: str, curve: CurveOption) -> CurveKeys | None:
    """The keys a client of ``url`` uses: :data:`FROM_ENV` resolves them for tcp only."""
    if curve == FROM_ENV:
        return resolve_client_curve() if url.startswith("tcp://") else None
    return curve if isinstance(curve, CurveKeys) else None


def apply_client_curve(sock: zmq.Socket[Any], url: str, keys: CurveKeys | None) -> None:
    """Make ``sock`` a CURVE client of a ``tcp://`` ``url`` (nothing for other transports)."""
    if keys is None or not url.startswith("tcp://"):
        return
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_key)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public_key)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret_key)

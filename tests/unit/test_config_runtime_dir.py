"""The socket (runtime) directory is the access control: 0700, ours, not writable by
others, or the daemon refuses to start and says which problem and how to fix it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral.protocol.endpoints import UnsafeDirectory, ensure_runtime_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_created_0700_and_readable_bits_tightened(tmp_path: Path) -> None:
    new = tmp_path / "a" / "corral"
    assert ensure_runtime_dir(new) == new
    assert mode(new) == 0o700
    readable = tmp_path / "readable"
    readable.mkdir()
    os.chmod(readable, 0o755)
    ensure_runtime_dir(readable)
    assert mode(readable) == 0o700


@pytest.mark.parametrize("bits", [0o770, 0o707, 0o777, 0o1777])
def test_group_or_world_writable_is_refused_with_the_fix(tmp_path: Path, bits: int) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, bits)
    with pytest.raises(UnsafeDirectory) as info:
        ensure_runtime_dir(loose)
    message = str(info.value)
    assert "group- or world-writable" in message and f"chmod 700 {loose}" in message
    assert mode(loose) == bits  # refused, not silently changed


def test_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    other = os.stat(theirs).st_uid + 1
    with pytest.raises(UnsafeDirectory) as info:
        ensure_runtime_dir(theirs, uid=other)
    message = str(info.value)
    assert f"owned by uid {os.getuid()}, not by this user (uid {other})" in message
    assert "remove it" in message


def test_symlink_file_and_uncreatable_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="not a plain directory"):
        ensure_runtime_dir(link)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UnsafeDirectory, match="not a plain directory"):
        ensure_runtime_dir(a_file)
    with pytest.raises(UnsafeDirectory, match="cannot create the runtime directory"):
        ensure_runtime_dir(a_file / "corral")

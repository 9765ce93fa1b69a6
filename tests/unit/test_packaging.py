"""Packaging: one import name (`corral`), every package directory installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("protocol", "actors", "supervisor")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_directory_is_listed_under_corral() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {
        "corral." + ".".join(init.parent.relative_to(ROOT).parts)
        for room in ROOMS
        for init in (ROOT / room).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == listed


def test_the_wheel_installs_only_the_corral_import_name(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("corral-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"corral"}
    assert len(dist_info) == 1
    # the rooms are inside, and nothing of the development tree is
    for room in ROOMS:
        assert f"corral/{room}/__init__.py" in names
    assert not any(n.startswith(("corral/tests", "tests/", "bench/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "corral = corral.supervisor.cli:main" in text

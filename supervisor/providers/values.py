"""Reading decoded provider JSON defensively: a member of the wrong type reads as
empty (``None``, ``{}``, ``[]``), never as an exception, so one odd line from a
provider cannot break its parser."""

from __future__ import annotations

from typing import Any

__all__ = ["as_dict", "as_list", "as_str"]


def as_str(value: object) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


def as_dict(value: object) -> dict[str, Any]:
    """``value`` if it is an object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """``value`` if it is an array, else an empty one."""
    return value if isinstance(value, list) else []

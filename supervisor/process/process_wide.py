"""One process-wide instance of a class, made on first use under a lock: the
pipe loop, the reaper, the spawner and the descendant tracker that providers
share when none is injected."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessWide(Generic[T]):
    """``get()`` makes the instance with ``make`` the first time, then returns it."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value

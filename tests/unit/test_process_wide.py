"""ProcessWide (supervisor/process/process_wide.py): one instance per process,
made on first use, even when many threads ask at once."""

from __future__ import annotations

import threading
import time

from corral.supervisor.process import default_loop, default_reaper
from corral.supervisor.process.process_wide import ProcessWide


def test_many_threads_asking_at_once_get_one_instance() -> None:
    made: list[object] = []

    def make() -> object:
        time.sleep(0.01)  # a slow constructor widens the race
        made.append(object())
        return made[-1]

    shared = ProcessWide(make)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(shared.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(made) == 1 and got == made * 8
    assert shared.get() is made[0]


def test_the_default_loop_and_reaper_are_each_one_instance() -> None:
    assert default_loop() is default_loop()
    assert default_reaper() is default_reaper()

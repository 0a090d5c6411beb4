"""Run charfix as its console script does, but end the process abruptly right after the Nth write its
backends make: `python tests/crashing.py N ARGS...` (docs/testing.md, "Crash points").

The crash comes from outside the product, as a kill would: the backends the bootstrap builds (every
set, a worker's too) have their write methods wrapped, and the Nth write to return ends the process
with `os._exit(70)`. Nothing is cleaned up: rows written in the open transaction are lost, objects
copied stay, and the audit log's line that would have closed the write is never written.

A write is one call of a repository write method or of Storage.write/copy, counted once even when an
adapter makes it through another of them. The count is shared by all threads, under a lock."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any

REPOSITORY_WRITES = ("complete_job", "mark_failed", "link_character", "insert_library_item",
                     "upgrade_library_item", "update_character_image")
STORAGE_WRITES = ("write", "copy")
CRASH_STATUS = 70


class Crash:
    def __init__(self, after: int):
        self.after = after
        self.count = 0
        self.lock = threading.Lock()
        self.local = threading.local()

    def arm(self, backends: Any) -> Any:
        for target, names in ((backends.repository, REPOSITORY_WRITES), (backends.storage, STORAGE_WRITES)):
            for name in names:
                setattr(target, name, self._counted(getattr(target, name)))
        return backends

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self.local, "depth", 0)
            self.local.depth = depth + 1
            try:
                made = method(*args, **kwargs)
            finally:
                self.local.depth = depth
            if depth == 0:
                with self.lock:
                    self.count += 1
                    if self.count >= self.after:
                        os._exit(CRASH_STATUS)
            return made

        return counted


def main(argv: list[str]) -> None:
    crash = Crash(int(argv[0]))
    from charfix.backends import bootstrap

    build = bootstrap.build_backends

    def armed(*args: Any, **kwargs: Any) -> Any:
        return crash.arm(build(*args, **kwargs))

    bootstrap.build_backends = armed
    sys.argv = ["charfix", *argv[1:]]
    from charfix.app import run

    run()


if __name__ == "__main__":
    main(sys.argv[1:])

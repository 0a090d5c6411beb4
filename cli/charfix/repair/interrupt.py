"""Stopping a writing command on SIGTERM or SIGINT without cutting a job or a page in half (docs/cron.md).

The first signal only asks the run to stop: no new job or page starts, the one in flight finishes (or
rolls back), and the command prints what was done and what remains, then exits 128 + the signal's
number (143 for SIGTERM, 130 for SIGINT). A second signal stops at once: the process exits, Postgres
rolls back the transaction in flight, and the next run settles its audit lines (docs/repairs.md)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Stop:
    """Set by a signal; the work loops look at `event` before each new job or page."""

    event: threading.Event = field(default_factory=threading.Event)
    signal: int | None = None

    @property
    def requested(self) -> bool:
        # Not the event: a run also sets it to stop its lanes after an error, which is no signal.
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else ""

    @property
    def exit_status(self) -> int:
        return 128 + (self.signal or 0)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def summary(self, done: str, remaining: str) -> str:
        return f"stopped by {self.name}: {done}; {remaining}"


@contextmanager
def stopping_on_signals() -> Iterator[Stop]:
    """While the block runs, SIGTERM and SIGINT ask it to stop (see the module's docstring)."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread; the caller's own stay
        return

    def ask(signum: int, _frame: FrameType | None) -> None:
        if stop.requested:
            os.write(2, f"charfix: {signal.Signals(signum).name} again: stopping at once; the page in flight "
                        "rolls back\n".encode())
            os._exit(128 + signum)
        stop.signal = signum
        stop.event.set()
        # Written straight to the descriptor: the handler may run in the middle of a Rich print.
        os.write(2, f"charfix: {signal.Signals(signum).name}: finishing the work in flight, then stopping "
                    "(send it again to stop at once)\n".encode())

    previous = {sig: signal.signal(sig, ask) for sig in SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

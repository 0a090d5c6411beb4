"""Progress on stderr for long runs (only on a terminal)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def job_progress(console: Console, *, total: int | None = None) -> Iterator[Callable]:
    """Jobs done (of the total when a scan counted it), the rate and the failures so far."""
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("repairing", total=total)
        started = time.monotonic()
        done = failed = 0

        def advance(result) -> None:
            nonlocal done, failed
            done += 1
            failed += result.outcome.value == "failed"
            rate = done / max(time.monotonic() - started, 1e-6)
            counted = "" if total is not None else f"{done} job(s) done, "
            progress.update(task, advance=1, description=f"{counted}{rate:.0f} job(s)/s, {failed} failed")

        yield advance


@contextmanager
def scan_progress(env, *, page_size: int) -> Iterator[Callable | None]:
    """`list-stuck`'s pages (of `page_size` jobs) and jobs examined, on stderr and only when stderr is
    a terminal: never in a pipe or a cron mail."""
    if not env.stderr_is_terminal:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=env.err,
                  transient=True) as progress:
        task = progress.add_task("reading the first page of jobs", total=None)

        def update(tally) -> None:
            page = tally.examined // page_size + 1
            progress.update(task, description=f"page {page}: {tally.examined} job(s) examined, {tally.shown} shown")

        yield update

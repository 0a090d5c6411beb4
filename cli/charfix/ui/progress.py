"""Progress on stderr for long runs (only on a terminal)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def job_progress(console: Console) -> Iterator[Callable]:
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("repairing", total=None)
        done = 0

        def advance(result) -> None:
            nonlocal done
            done += 1
            progress.update(task, description=f"{done} job(s) handled, last {str(result.job_id)[:8]} {result.outcome.value}")

        yield advance


@contextmanager
def scan_progress(env) -> Iterator[Callable | None]:
    """`list-stuck`'s pages and jobs examined, on stderr and only when stderr is a terminal: never in
    a pipe or a cron mail."""
    if not env.stderr_is_terminal:
        yield None
        return
    from charfix.scan import PAGE_SIZE

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=env.err,
                  transient=True) as progress:
        task = progress.add_task("reading the first page of jobs", total=None)

        def update(tally) -> None:
            page = tally.examined // PAGE_SIZE + 1
            progress.update(task, description=f"page {page}: {tally.examined} job(s) examined, {tally.shown} shown")

        yield update

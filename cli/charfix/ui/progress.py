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

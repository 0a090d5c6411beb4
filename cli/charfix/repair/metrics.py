"""The backfill's figures for monitoring: a file in the Prometheus text exposition format, the kind
node_exporter's textfile collector reads (docs/cron.md shows the collector and the alert rules).

A textfile is a snapshot that the collector re-reads on every scrape, so every figure is a gauge
describing the last run; nothing is a counter. The last success time is carried over from the
previous file when this run did not succeed, so an alert can say "no success for N hours" however
many runs failed in between.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from charfix.errors import CharfixError, ConfigError, ExitStatus
from charfix.models import State
from charfix.models import BackfillReport

PREFIX = "charfix_backfill"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"
# States a backfill leaves for a person or for later; always written, zero included, so that an alert
# rule compares numbers instead of handling a missing series.
LEFT_STATES = tuple(s.value for s in State if s not in (State.SAVED, State.REPAIRABLE))


@dataclass
class Run:
    """One backfill run as monitoring sees it: when, how long, how it ended, and its report."""

    started: datetime
    finished: datetime | None = None
    exit_code: int = int(ExitStatus.OK)
    report: BackfillReport | None = None
    previous_success: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == ExitStatus.OK


@dataclass
class _Family:
    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def render(run: Run) -> str:
    """The run in the text exposition format (version 0.0.4), HELP and TYPE before each family."""
    lines: list[str] = []
    for family in _families(run):
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} gauge")
        for labels, value in family.samples:
            lines.append(f"{family.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def _families(run: Run) -> list[_Family]:
    finished = (run.finished or run.started).timestamp()
    success = finished if run.succeeded else (run.previous_success or 0.0)
    families = [
        _Family(f"{PREFIX}_last_run_timestamp_seconds", "Unix time the last backfill run ended.", [({}, finished)]),
        _Family(LAST_SUCCESS, "Unix time the last backfill run that exited 0 ended (0: none recorded).",
                [({}, success)]),
        _Family(f"{PREFIX}_duration_seconds", "How long the last backfill run took.",
                [({}, max(0.0, finished - run.started.timestamp()))]),
        _Family(f"{PREFIX}_exit_code", "Exit code of the last backfill run (see docs/cron.md).",
                [({}, float(run.exit_code))]),
    ]
    report = run.report
    if report is None:  # the run stopped before its summary: only the figures above are known
        return families
    outcomes = {
        "repaired": len(report.repaired),
        "failed": len(report.failed),
        "changed": len(report.changed),
        "skipped_locked": len(report.skipped_other),
        "not_attempted_over_max": report.capped,
        "already_fine": report.already_fine,
    }
    families += [
        _Family(f"{PREFIX}_jobs_examined", "Portrait jobs the last backfill run examined.",
                [({}, float(report.examined))]),
        _Family(f"{PREFIX}_jobs", "Jobs of the last backfill run by outcome.",
                [({"outcome": name}, float(count)) for name, count in outcomes.items()]),
        _Family(f"{PREFIX}_jobs_left", "Jobs the last backfill run left alone, by state (needs_review waits for a person).",
                [({"state": state}, float(report.skipped_by_state.get(state, 0))) for state in LEFT_STATES]),
    ]
    return families


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def previous_success(path: Path) -> float | None:
    """The last success time of the file a previous run left, if it can be read; a torn or foreign
    file only loses that one figure."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = re.search(rf"^{LAST_SUCCESS} (\S+)$", text, flags=re.MULTILINE)
    if match is None:
        return None
    try:
        value = float(match.group(1))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def write_atomically(path: Path, text: str) -> None:
    """Write a temp file in the same directory, fsync it, rename it over `path`: the collector reads
    either the old file or the new one, never half of one. The temp name does not end in `.prom`, so
    the collector ignores it while it is being written."""
    directory = path.parent
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # The collector runs as another user (node_exporter): it must be able to read the file.
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open a directory; the rename is done all the same
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(path: Path) -> None:
    """Fail before any repair when the file cannot be written, not after the run's work is done."""
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(f"--metrics-file: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"--metrics-file: directory {directory} is not writable")
    if path.is_dir():
        raise ConfigError(f"--metrics-file: {path} is a directory")


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, CharfixError):
        return int(exc.exit_status)
    if isinstance(exc, KeyboardInterrupt):
        return int(ExitStatus.INTERRUPTED)
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code
    exit_code = getattr(exc, "exit_code", None)  # typer.Exit / click.exceptions.Exit
    if isinstance(exit_code, int):
        return exit_code
    return int(ExitStatus.INTERNAL)


@contextmanager
def recorded_run(path: Path | None, *, clock: Callable[[], datetime], dry_run: bool = False) -> Iterator[Run]:
    """Record the run in `path` when the block ends, however it ends. Set `run.report` inside the block.
    No path, or a dry run (it repairs nothing, so it is no evidence that repairs work): nothing written."""
    run = Run(started=clock())
    if path is None or dry_run:
        yield run
        return
    check_writable(path)
    run.previous_success = previous_success(path)
    try:
        yield run
    except BaseException as exc:
        run.exit_code = exit_code_of(exc)
        try:
            _finish(path, run, clock)
        except ConfigError:
            pass  # the error that stopped the run is the one to report
        raise
    if not run.exit_code and run.report is not None and run.report.failed:
        run.exit_code = int(ExitStatus.JOBS_FAILED)
    _finish(path, run, clock)


def _finish(path: Path, run: Run, clock: Callable[[], datetime]) -> None:
    run.finished = clock()
    try:
        write_atomically(path, render(run))
    except OSError as exc:
        raise ConfigError(f"--metrics-file: cannot write {path}: {exc.strerror or exc}") from None

"""What every writing command shares: confirmation (as gh does it) and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from charfix.errors import ExitStatus, UsageError
from charfix.repair.interrupt import stopping_on_signals
from charfix.runtime import Runtime

if TYPE_CHECKING:
    from charfix.models import JobResult
    from charfix.repair.operations import Preview


@dataclass(frozen=True)
class WriteOptions:
    command: str
    dry_run: bool
    yes: bool
    json_output: object  # a ui.jsonout.JsonOutput, or None for people
    audit_log: Path | None
    operator: str | None


def preview_then_write(runtime: Runtime, options: WriteOptions, preview: Preview,
                       question: Callable[[JobResult], str]) -> None:
    """The one-job write flow: show the checked preview (no lock, no write) with the target and
    confirm, open the audit log, apply it, show. Exit 1 when the job failed or changed under the write
    so that what was asked did not happen; 7 when it needs a person."""
    from charfix.models import Outcome
    from charfix.repair.operations import apply

    planned = preview.result
    if options.dry_run or planned.outcome != Outcome.PLANNED:
        show_result(runtime, planned, options.json_output, plan=options.dry_run)
        if planned.outcome == Outcome.FAILED:
            raise typer.Exit(int(ExitStatus.JOBS_FAILED))
        if needs_person(planned):
            raise typer.Exit(int(ExitStatus.NEEDS_PERSON))
        return
    with stopping_on_signals() as stop:
        if not approve(runtime, planned, question(planned), yes=options.yes):
            runtime.env.err.print("Nothing written.")
            return
        if stop.requested:  # the signal came while the person was asked: nothing started
            report_stop(runtime, stop.summary("nothing was written", f"job {planned.job_id} was not repaired"))
            raise typer.Exit(stop.exit_status)
        audit = open_audit(runtime, options.command, path=options.audit_log, operator=options.operator)
        try:
            result = apply(runtime.backends(), preview, audit)  # a signal now lets this job finish or roll back
        finally:
            audit.close()
    show_result(runtime, result, options.json_output, run_id=audit.run)
    if stop.requested:
        report_stop(runtime, stop.summary(f"job {result.job_id}: {result.outcome.value}", "nothing else was pending"))
        raise typer.Exit(stop.exit_status)
    if failed(result):
        raise typer.Exit(int(ExitStatus.JOBS_FAILED))


def failed(result: JobResult) -> bool:
    """What was asked did not happen: the repair failed, or the job changed under it (exit 1, README
    "Exit codes"), for every one-job write alike."""
    from charfix.models import Outcome

    return result.outcome in (Outcome.FAILED, Outcome.CHANGED)


def report_stop(runtime: Runtime, summary: str) -> None:
    """What a signal left done and undone, on stderr (docs/cron.md, "Stopping a run")."""
    runtime.env.err.print(summary, markup=False, highlight=False)


def needs_person(result: JobResult) -> bool:
    """Skipped because of the job's state (not because another run held it)."""
    from charfix.models import State
    from charfix.models import Outcome

    return result.outcome == Outcome.SKIPPED and result.state is not None and result.state != State.REPAIRABLE


def show_result(runtime: Runtime, result: JobResult, json_output: Any, *, plan: bool = False,
                run_id: str | None = None) -> None:
    """`plan`: a --dry-run, shown exactly as the write prompt shows it (the target, then the steps).
    `run_id`: the run that wrote (docs/audit.md), in the JSON."""
    if json_output is not None:
        data = result.to_json()
        json_output.print_one(runtime.env, data if run_id is None else {**data, "run_id": run_id})
        return
    from charfix.ui.results import render_job_result

    if plan:
        show_target(runtime)
    render_job_result(runtime.env.out, result)


def show_target(runtime: Runtime) -> None:
    from charfix.ui.approval import show_target as show

    show(runtime.env.out, runtime.settings)


def where(runtime: Runtime) -> str:
    """The target in a few words, for the question."""
    from charfix.ui.approval import short_where

    return short_where(runtime.settings)


def approve(runtime: Runtime, preview: JobResult, question: str, *, yes: bool) -> bool:
    """Show the target and the exact plan right above the question. With --yes nobody is asked; a
    person watching stderr still sees where it writes."""
    if yes:
        if runtime.env.stderr_is_terminal:
            from charfix.ui.approval import show_target as show

            show(runtime.env.err, runtime.settings)
        return True
    require_terminal(runtime)
    show_result(runtime, preview, None, plan=True)
    return confirm(runtime, question, yes=False)


def approve_many(runtime: Runtime, show: Callable[[], None], question: str, *, yes: bool) -> bool:
    """`approve` for a write that is no one job's plan (undo, init): `show` prints what will be written,
    and where, right above the question; with --yes only the target goes to a watching stderr."""
    if yes:
        if runtime.env.stderr_is_terminal:
            from charfix.ui.approval import show_target as show_on

            show_on(runtime.env.err, runtime.settings)
        return True
    require_terminal(runtime)
    show()
    return confirm(runtime, question, yes=False)


def require_terminal(runtime: Runtime) -> None:
    if not runtime.env.interactive:
        raise UsageError("refusing to write without --yes: not running on a terminal, so nobody can confirm",
                         hint="add --yes, or --dry-run to see the plan")


def confirm(runtime: Runtime, question: str, *, yes: bool) -> bool:
    """--yes answers for the person; otherwise ask, but only when a person is at the terminal."""
    if yes:
        return True
    require_terminal(runtime)
    from charfix.ui.prompts import ask_confirm

    return ask_confirm(question)


def open_audit(runtime: Runtime, command: str, *, path: Path | None, operator: str | None,
               reverts: str | None = None) -> Any:
    """Start a run: its recorder (docs/audit.md: the database trail once `charfix init` made it, else
    the JSONL file), opened before the first write, and its id on stderr."""
    from charfix.audit.log import AuditLog, default_audit_path, default_operator

    settings = runtime.settings
    backends = runtime.backends()
    who = operator or settings.operator or default_operator()
    line = command_line(runtime)
    conn = database_trail(backends)
    recorder: Any
    if conn is not None:
        from charfix.audit.database import DatabaseAudit, side_conninfo

        recorder = DatabaseAudit(conninfo=side_conninfo(conn), operator=who, command=command, command_line=line,
                                 reverts=reverts).open(backends)
    else:
        chosen = path or settings.audit_log or default_audit_path()
        # With the backends, opening settles what a killed run left without an outcome (docs/repairs.md).
        recorder = AuditLog(path=chosen, operator=who, command=command, command_line=line,
                            reverts=reverts).open(backends)
    runtime.env.err.print(f"run {recorder.run} (audit trail: {recorder.name})", markup=False, highlight=False)
    return recorder


def command_line(runtime: Runtime) -> str:
    """The command as given, every secret masked (as on stderr: ui/environment.py)."""
    import shlex

    return runtime.env.redact_message(shlex.join(["charfix", *runtime.argv]))


def database_trail(backends: Any) -> Any:
    """The repository's connection when the database holds charfix's trail (`charfix init`), else None."""
    conn = backends.repository.connection()
    if conn is None:
        return None
    from charfix.audit.database import installed

    return conn if installed(conn) else None


def reading_trail(runtime: Runtime, path: Path | None) -> Any:
    """The trail `history` and `undo` read: the one writing runs use (open_audit)."""
    from charfix.audit.log import default_audit_path
    from charfix.audit.trail import FileTrail, Trails

    backends = runtime.backends()
    conn = database_trail(backends)
    file = FileTrail(path or runtime.settings.audit_log or default_audit_path())
    if conn is None:
        return file
    from charfix.audit.database import DatabaseTrail

    return Trails([file, DatabaseTrail(conn)])  # runs recorded before `charfix init` stay readable

"""`charfix complete-job`: mark a job whose output exists completed, then finish its plan."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.commands import options
from charfix.commands.writing import confirm, open_audit
from charfix.errors import ExitStatus
from charfix.parsing import parse_job_ref
from charfix.repair import Outcome
from charfix.runtime import Runtime
from charfix.selection import build_rules
from charfix.scan import resolve_job_ids
from charfix.service import complete_job


def complete_job_cli(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job id (or a unique prefix of 8+ characters).", show_default=False)],
    no_save: options.NoSave = False,
    mark_failed: Annotated[
        bool, typer.Option("--mark-failed", help="Record a job that never produced output as failed instead.")
    ] = False,
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    dry_run: options.DryRun = False,
    yes: options.Yes = False,
    json_output: options.Json = False,
    operator: options.Operator = None,
    audit_log: options.AuditPath = None,
) -> None:
    """Mark a job [b]completed[/b] at the time its output was stored, then carry out the rest of its plan
    (copy to the library, insert the row, point the character at it) unless [cyan]--no-save[/cyan].

    Refuses a job with no output; [cyan]--mark-failed[/cyan] records such a job as failed instead.

    Example: [cyan]charfix --demo complete-job 0767ab69 --dry-run[/cyan]
    """
    runtime: Runtime = ctx.obj
    ref = parse_job_ref(job_id)
    rules = build_rules(now=runtime.now(), stuck_after=stuck_after, link_window=link_window)
    backends = runtime.backends()
    job = resolve_job_ids(backends, [ref])[0]
    kwargs = dict(rules=rules, save=not no_save, mark_failed=mark_failed)
    preview = complete_job(backends, job, dry_run=True, **kwargs)
    if dry_run or preview.outcome != Outcome.PLANNED:
        _show(runtime, preview, json_output)
        if preview.outcome == Outcome.FAILED:
            raise typer.Exit(int(ExitStatus.JOBS_FAILED))
        return
    what = "mark it failed" if mark_failed else f"apply {len(preview.steps)} step(s)"
    if not confirm(runtime, f"Job {job}: {what}?", yes=yes):
        runtime.env.err.print("Nothing written.")
        return
    audit = open_audit(runtime, "complete-job", path=audit_log, operator=operator)
    try:
        result = complete_job(backends, job, audit=audit, **kwargs)
    finally:
        audit.close()
    _show(runtime, result, json_output)
    if result.outcome == Outcome.FAILED:
        raise typer.Exit(int(ExitStatus.JOBS_FAILED))


def _show(runtime: Runtime, result, json_output: bool) -> None:
    if json_output:
        runtime.env.print_json(result.to_json())
        return
    from charfix.ui.results import render_job_result

    render_job_result(runtime.env.out, result)

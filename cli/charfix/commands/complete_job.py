"""`charfix complete-job`: mark a job whose output exists completed, then finish its plan."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.commands import options
from charfix.commands.writing import WriteOptions, preview_then_write, where
from charfix.parsing import parse_job_ref
from charfix.runtime import Runtime


def complete_job_cli(
    ctx: typer.Context,
    job_id: options.JobRef,
    no_save: options.NoSave = False,
    mark_failed: Annotated[
        bool, typer.Option("--mark-failed", help="Record a job that never produced output as failed instead.")
    ] = False,
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    dry_run: options.DryRun = False,
    yes: options.Yes = False,
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
    operator: options.Operator = None,
    audit_log: options.AuditPath = None,
) -> None:
    """Mark a job completed at the time its output was stored, then carry out the rest of its plan
    (copy to the library, insert the row, point the character at it) unless --no-save.

    Refuses a job with no output; --mark-failed records such a job as failed instead.

    Example: charfix --demo complete-job 0767ab69 --dry-run
    """
    from charfix.queries.scan import resolve_job_ids
    from charfix.queries.selection import build_rules
    from charfix.repair.operations import preview_complete_job

    runtime: Runtime = ctx.obj
    json_output = options.json_output(json_fields, jq)
    ref = parse_job_ref(job_id)
    rules = build_rules(now=runtime.now(), stuck_after=stuck_after, link_window=link_window)
    backends = runtime.backends()
    job = resolve_job_ids(backends, [ref])[0]
    write_options = WriteOptions("complete-job", dry_run, yes, json_output, audit_log, operator)
    what = "Mark this job failed ({n} step)" if mark_failed else "Apply these {n} step(s) to this job"
    preview = preview_complete_job(backends, job, rules=rules, save=not no_save, mark_failed=mark_failed,
                                   now=runtime.now)
    preview_then_write(runtime, write_options, preview,
                       lambda planned: f"{what.format(n=len(planned.steps))} on {where(runtime)}?")

"""`charfix history JOB`: every run that touched a job, from the audit trail in use."""

from __future__ import annotations

import typer

from charfix.commands import options
from charfix.runtime import Runtime


def history_cli(
    ctx: typer.Context,
    job_id: options.JobRef,
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
    audit_log: options.AuditPath = None,
) -> None:
    """Every run that touched a job, its rows and its objects: when, who, which command (as typed,
    secrets masked), and what each write changed (before -> after). Read from the audit trail in use:
    the database table charfix.audit after `charfix init`, else the audit log file. It writes nothing.

    Example: charfix --demo history 69e0cd17
    """
    from charfix.commands.writing import reading_trail
    from charfix.parsing import parse_job_ref
    from charfix.queries.history import job_history
    from charfix.queries.scan import resolve_job_ids

    runtime: Runtime = ctx.obj
    json_output = options.json_output(json_fields, jq)
    backends = runtime.backends()
    job = resolve_job_ids(backends, [parse_job_ref(job_id)])[0]
    trail = reading_trail(runtime, audit_log)
    runs = job_history(trail, job)
    if json_output is not None:
        json_output.print_one(runtime.env, {"job_id": str(job), "trail": trail.name,
                                            "runs": [run.to_json() for run in runs]})
        return
    from charfix.ui.audit_render import render_history

    render_history(runtime.env.out, str(job), trail.name, runs)

"""`charfix backfill-portraits`: the cron job. Repairs every repairable job, touches nothing else."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from charfix.commands import options
from charfix.commands.writing import confirm, open_audit, report_stop, require_terminal, show_target, where
from charfix.errors import ExitStatus
from charfix.repair.interrupt import stopping_on_signals
from charfix.runtime import Runtime


def backfill_cli(
    ctx: typer.Context,
    since: options.Since = "7d",
    user: options.User = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", metavar="STATE", help="Only consider jobs in this state (repeatable); only "
                                       "repairable ones are ever repaired.")
    ] = None,
    every_state: Annotated[bool, typer.Option("--all", help="Consider every portrait job.")] = False,
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    max_jobs: Annotated[int | None, typer.Option("--max", metavar="N", min=1, help="Repair at most this many jobs in one run.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", metavar="N", min=1, max=16, help="Jobs repaired in parallel "
                                              "(each with its own database connection).")] = 1,
    dry_run: options.DryRun = False,
    yes: options.Yes = False,
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
    operator: options.Operator = None,
    audit_log: options.AuditPath = None,
    metrics_file: Annotated[Path | None, typer.Option("--metrics-file", metavar="PATH", help="Also write the run's figures to this "
                                                      "file for node_exporter's textfile collector (a dry run writes none).",
                                                      show_default=False)] = None,
) -> None:
    """Repair every repairable portrait job; never touch needs_review, lost, failed or in_progress ones.

    Safe to run from cron (with --yes): each job is locked, re-diagnosed and repaired in a transaction
    (over Postgres, a page of jobs per transaction), and a second run finds nothing to do. Exit code 0 when every attempted repair succeeded,
    1 when any failed (the others are still done).

    Example: charfix --demo backfill-portraits --yes
    """
    from charfix.queries.selection import build_selection
    from charfix.repair.metrics import recorded_run
    from charfix.repair.operations import backfill
    from charfix.queries.users import user_option

    runtime: Runtime = ctx.obj
    user = user_option(runtime, user)  # an email becomes the user's id
    json_output = options.json_output(json_fields, jq)
    selection = build_selection(
        now=runtime.now(), since=since, user=user, states=state, every_state=every_state,
        stuck_after=stuck_after, link_window=link_window, limit=None, backends=runtime.backends,
    )
    backends = runtime.backends()
    total = None
    if not dry_run and not yes:
        # Scan first (writing nothing), show what it would do and where, then ask.
        require_terminal(runtime)
        plan = backfill(backends, selection, max_jobs=max_jobs, dry_run=True)
        _show_plan(runtime, plan)
        total = len(plan.planned)
        if not total or not confirm(runtime, f"Repair these {total} job(s), {_steps(plan)} step(s) in all, "
                                             f"on {where(runtime)}?", yes=False):
            runtime.env.err.print("Nothing written.")
            return
    # A dry run repairs nothing: no "repairing" progress for it.
    with stopping_on_signals() as stop, (nullcontext(None) if dry_run else _progress(runtime, total)) as progress, \
            recorded_run(metrics_file, clock=runtime.now, dry_run=dry_run) as run:
        audit = None if dry_run else open_audit(runtime, "backfill-portraits", path=audit_log, operator=operator)
        try:
            report = run.report = backfill(backends, selection, max_jobs=max_jobs, concurrency=concurrency,
                                           dry_run=dry_run, audit=audit, open_worker=runtime.open_worker,
                                           progress=progress, stop=stop.event, now=runtime.now)
            if stop.requested:
                run.exit_code = int(stop.exit_status)  # the metrics say the run was stopped, not that it succeeded
        finally:
            if audit is not None:
                audit.close()
    if json_output is not None:
        data = report.to_json()
        json_output.print_one(runtime.env, data if audit is None else {**data, "run_id": audit.run})
    elif dry_run:
        _show_plan(runtime, report)
    else:
        from charfix.ui.results import render_backfill

        render_backfill(runtime.env.out, report, dry_run=dry_run)
    if stop.requested:
        report_stop(runtime, stop.summary(_done(report), _remaining(report)))
        raise typer.Exit(stop.exit_status)
    if report.failed:
        raise typer.Exit(int(ExitStatus.JOBS_FAILED))


def _done(report) -> str:
    return (f"{len(report.repaired)} job(s) repaired, {len(report.failed)} failed, "
            f"{len(report.changed)} changed meanwhile")


def _remaining(report) -> str:
    left = f"{report.not_attempted} repairable job(s) not attempted"
    if report.scan_stopped:
        left += ", and the scan stopped before every job was examined"
    return f"{left}; run again to finish them"


def _show_plan(runtime: Runtime, plan) -> None:
    """The same block for --dry-run and above the question: the target, counts per state and action."""
    from charfix.ui.results import render_backfill_plan

    show_target(runtime)
    render_backfill_plan(runtime.env.out, plan)


def _steps(plan) -> int:
    return sum(len(result.steps) for result in plan.planned)


def _progress(runtime: Runtime, total: int | None):
    """Done (of total, when a scan counted it), rate and failures on stderr, only when a person
    watches it."""
    if not runtime.env.stderr_is_terminal:
        return nullcontext(None)
    from charfix.ui.progress import job_progress

    return job_progress(runtime.env.err, total=total)

"""`charfix undo RUN_ID`: reverse a run's writes, newest first, where nobody changed them since."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from charfix.commands import options
from charfix.errors import ExitStatus
from charfix.runtime import Runtime

if TYPE_CHECKING:
    from charfix.repair.undo import UndoReport


def undo_cli(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run to undo (its id, or a unique prefix of 8+ "
                                          "characters), as a writing command printed it.", show_default=False)],
    job: Annotated[str | None, typer.Option("--job", metavar="JOB", help="Only this job's writes (id or 8+ character "
                                            "prefix).", show_default=False)] = None,
    dry_run: options.DryRun = False,
    yes: options.Yes = False,
    json_fields: options.JsonFields = None,
    jq: options.Jq = None,
    operator: options.Operator = None,
    audit_log: options.AuditPath = None,
) -> None:
    """Reverse a run's writes, newest first: put each row it changed back, and delete the rows and
    objects it created, each only where it still holds exactly what the run wrote. Anything changed
    since is left alone and reported as a conflict (exit 1); a record that names anything outside the
    job's own user's data is refused (exit 6). The undo is itself a run, recorded in the audit trail;
    undoing twice changes nothing the second time.

    Example: charfix --demo undo 1b44ecbc --dry-run
    """
    from charfix.commands.writing import approve_many, open_audit, reading_trail, show_target, where
    from charfix.parsing import parse_job_ref
    from charfix.queries.scan import resolve_job_ids
    from charfix.audit.trail import resolve_run
    from charfix.repair.undo import Outcome, undo

    runtime: Runtime = ctx.obj
    json_output = options.json_output(json_fields, jq)
    backends = runtime.backends()
    trail = reading_trail(runtime, audit_log)
    run = resolve_run(trail.run_ids(), run_id)
    records = trail.read(run=run).writes
    if job is not None:
        only = str(resolve_job_ids(backends, [parse_job_ref(job)])[0])
        records = [r for r in records if r.job_id == only]
    preview = undo(backends, run, records, dry_run=True)
    pending = preview.count(Outcome.WOULD_REVERT)
    report, undo_run = preview, None
    if not dry_run and pending:
        def show() -> None:
            show_target(runtime)
            _show(runtime, preview, plan=True)

        if approve_many(runtime, show,
                        f"Revert these {pending} write(s) of run {run[:8]} on {where(runtime)}?", yes=yes):
            audit = open_audit(runtime, "undo", path=audit_log, operator=operator, reverts=run)
            try:
                report = undo(backends, run, records, dry_run=False, audit=audit)
            finally:
                audit.close()
            undo_run = audit.run
        else:
            runtime.env.err.print("Nothing written.")
            return
    if json_output is not None:
        json_output.print_one(runtime.env, {**report.to_json(), "run_id": undo_run, "trail": trail.name})
    else:
        if dry_run:
            show_target(runtime)
        _show(runtime, report, plan=dry_run)
    if report.count(Outcome.REFUSED):
        raise typer.Exit(int(ExitStatus.REFUSED))
    if report.count(Outcome.CONFLICT) or report.count(Outcome.KEPT) or report.count(Outcome.FAILED):
        raise typer.Exit(int(ExitStatus.JOBS_FAILED))


def _show(runtime: Runtime, report: UndoReport, *, plan: bool) -> None:
    from charfix.ui.audit_render import render_undo

    render_undo(runtime.env.out, report, dry_run=plan)

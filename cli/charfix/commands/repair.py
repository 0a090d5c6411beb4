"""`charfix repair`: the interactive flow for one support person, a queue of jobs one by one.
The flow itself is in repair_session, imported when the command runs (start-up stays light)."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.commands import options
from charfix.errors import ExitStatus, UsageError
from charfix.runtime import Runtime


def repair_cli(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="One job (id or 8+ character prefix); default: walk the stuck jobs.",
                                                 show_default=False)] = None,
    since: options.Since = "7d",
    user: options.User = None,
    state: Annotated[list[str] | None, typer.Option("--state", metavar="STATE", help="Only jobs in this state (repeatable).")] = None,
    reason: Annotated[list[str] | None, typer.Option("--reason", metavar="REASON", help="Only jobs with this reason code "
                                                     "(repeatable; any of them).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Offer again the jobs decided in earlier runs.")] = False,
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply a repairable job's plan without asking "
                                      "(scripts: needs JOB_ID).")] = False,
    operator: options.Operator = None,
    audit_log: options.AuditPath = None,
) -> None:
    """Walk the stuck jobs (or one job) as a queue ("3 of 12"): show each job's evidence and offer
    every action that fits it: apply the plan, choose the character, complete the job only, mark it
    failed, skip, or quit. Every write shows its plan and target first and is confirmed. Jobs a
    person can act on come first; a later run resumes after the jobs already decided.

    Example: charfix --demo repair --state needs_review   or, in a script,
    charfix repair 4f2c3f1b --yes
    """
    from charfix.commands.repair_session import Session, queue_of, reason_codes
    from charfix.commands.writing import open_audit, report_stop
    from charfix.repair.interrupt import stopping_on_signals
    from charfix.parsing import parse_job_ref
    from charfix.queries.scan import diagnose_ids, resolve_job_ids
    from charfix.queries.selection import Tally, build_selection, selected
    from charfix.queries.users import user_option

    runtime: Runtime = ctx.obj
    if not runtime.env.interactive and not (yes and job_id):
        raise UsageError("charfix repair asks questions, and this is not a terminal",
                         hint=f"in scripts use: {runtime.env.command_prefix} repair JOB_ID --yes, "
                              f"or {runtime.env.command_prefix} backfill-portraits --yes")
    user = user_option(runtime, user)  # an email becomes the user's id
    selection = build_selection(now=runtime.now(), since=since, user=user, states=state, every_state=False,
                                stuck_after=stuck_after, link_window=link_window, limit=None,
                                backends=runtime.backends)
    codes = reason_codes(reason)
    backends = runtime.backends()
    if job_id:
        queue = diagnose_ids(backends, resolve_job_ids(backends, [parse_job_ref(job_id)]), selection.rules)
        decisions = None
    else:
        from charfix.commands.repair_queue import Decisions, default_path
        from charfix.ui.approval import where as target

        decisions = Decisions(default_path(), target(runtime.settings))
        if restart:
            decisions.forget()
        queue = queue_of(runtime, selected(backends, selection, Tally()), codes, decisions)
    audit = open_audit(runtime, "repair", path=audit_log, operator=operator)
    session = Session(runtime, selection.rules, audit, yes=yes, decisions=decisions)
    with stopping_on_signals() as stop:
        try:
            for position, diagnosis in enumerate(queue, 1):
                # A signal: the job in flight finished (or rolled back); no further job is visited.
                if stop.requested or not session.handle(diagnosis, position, len(queue)):
                    break
        finally:
            audit.close()
    runtime.env.out.print(f"{session.repaired} job(s) repaired, {session.failed} failed, {audit.written} write(s) logged.")
    if stop.requested:
        report_stop(runtime, stop.summary(f"{session.repaired} job(s) repaired, {session.failed} failed",
                                          "the jobs after it were not visited"))
        raise typer.Exit(stop.exit_status)
    if session.failed:
        raise typer.Exit(int(ExitStatus.JOBS_FAILED))
    if job_id and session.needs_person:  # `repair JOB --yes` on a job --yes may not touch: nothing written
        raise typer.Exit(int(ExitStatus.NEEDS_PERSON))

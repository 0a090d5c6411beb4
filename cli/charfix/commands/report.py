"""`charfix report`: Markdown for a support ticket, about one job or one user's jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charfix.commands import options
from charfix.errors import UsageError
from charfix.runtime import Runtime


def report_cli(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(metavar="[JOB]", help="The job id (or a unique prefix of 8+ "
                                                 "characters).", show_default=False)] = None,
    user: Annotated[str | None, typer.Option("--user", metavar="EMAIL|ID", help="Instead of one job: this user's jobs (email, id or 8+ character id prefix) "
                                             "that need attention or that charfix changed.", show_default=False)] = None,
    since: Annotated[str, typer.Option("--since", metavar="DURATION|DATE", help="With --user: how far back to look (30d, or a date).")] = "30d",
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    audit_log: options.AuditPath = None,
) -> None:
    """Print a Markdown report to paste into a support ticket: what happened, what charfix did and when
    (from the audit log), and what is left for a person. No keys, no web addresses; every text from
    the database is escaped. It writes nothing.

    Example: charfix --demo report 69e0cd17   or   charfix --demo report --user mandy@example.com
    """
    from charfix.parsing import parse_job_ref, parse_since
    from charfix.queries.report import build_report
    from charfix.queries.scan import resolve_job_ids
    from charfix.queries.selection import build_rules
    from charfix.queries.users import resolve_user, user_by_prefix

    runtime: Runtime = ctx.obj
    if (job_id is None) == (user is None):
        raise UsageError("give one job id, or --user, but not both", hint="charfix report JOB  or  charfix report --user EMAIL")
    now = runtime.now()
    rules = build_rules(now=now, stuck_after=stuck_after, link_window=link_window)
    path = audit_log or runtime.settings.audit_log or _default_audit_path()
    backends = runtime.backends()
    from charfix.commands.writing import database_trail, reading_trail

    # Once `charfix init` made the database trail, read it (and the file's runs from before it).
    trail = reading_trail(runtime, audit_log) if database_trail(backends) is not None else None
    if job_id is not None:
        ids = resolve_job_ids(backends, [parse_job_ref(job_id)])
        text = build_report(backends, rules=rules, audit_path=path, job_ids=ids, trail=trail)
    elif user is not None:  # always, by the check above
        user_id = resolve_user(backends, user, by_prefix=user_by_prefix(backends))
        text = build_report(backends, rules=rules, audit_path=path, user_id=user_id, since=parse_since(since, now=now),
                            trail=trail)
    runtime.env.stdout.write(runtime.env.redact(text))
    runtime.env.stdout.flush()


def _default_audit_path() -> Path:
    from charfix.audit.log import default_audit_path

    return default_audit_path()

"""`charfix repair`: the interactive flow for one support person, job by job."""

from __future__ import annotations

from typing import Annotated

import typer

from charfix.advice import APPLY, CHOOSE, COMPLETE, FETCH, MARK_FAILED, QUIT, SKIP, repair_choices
from charfix.commands import options
from charfix.commands.writing import open_audit
from charfix.errors import ExitStatus, UsageError
from charfix.models import Diagnosis, State
from charfix.parsing import parse_job_ref
from charfix.repair import Outcome, RepairOptions, repair_job
from charfix.runtime import Runtime
from charfix.scan import diagnose_ids, resolve_job_ids
from charfix.selection import Tally, build_selection, selected
from charfix.service import check_link, complete_job, link_character



def repair_cli(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="One job (id or 8+ character prefix); default: walk the stuck jobs.",
                                                 show_default=False)] = None,
    since: options.Since = "7d",
    user: options.User = None,
    stuck_after: options.StuckAfter = "15m",
    link_window: options.LinkWindow = "1h",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply a repairable job's plan without asking "
                                      "(scripts: needs JOB_ID).")] = False,
    operator: options.Operator = None,
    audit_log: options.AuditPath = None,
) -> None:
    """Walk the stuck jobs (or one job): show each diagnosis and offer what fits it: apply the plan,
    choose the character, complete the job only, mark it failed, skip, or quit. Every write is confirmed.

    Example: [cyan]charfix --demo repair[/cyan]   or, in a script, [cyan]charfix repair 4f2c3f1b --yes[/cyan]
    """
    runtime: Runtime = ctx.obj
    selection = build_selection(now=runtime.now(), since=since, user=user, states=None, every_state=False,
                                stuck_after=stuck_after, link_window=link_window, limit=None,
                                backends=runtime.backends)
    if not runtime.env.interactive and not (yes and job_id):
        raise UsageError("charfix repair asks questions, and this is not a terminal",
                         hint=f"in scripts use: {runtime.env.command_prefix} repair JOB_ID --yes, "
                              f"or {runtime.env.command_prefix} backfill-portraits --yes")
    backends = runtime.backends()
    if job_id:
        diagnoses = diagnose_ids(backends, resolve_job_ids(backends, [parse_job_ref(job_id)]), selection.rules)
    else:
        diagnoses = selected(backends, selection, Tally())
    audit = open_audit(runtime, "repair", path=audit_log, operator=operator)
    session = _Session(runtime, selection.rules, audit, yes=yes)
    try:
        for diagnosis in diagnoses:
            if not session.handle(diagnosis):
                break
    finally:
        audit.close()
    runtime.env.out.print(f"{session.repaired} job(s) repaired, {session.failed} failed, {audit.written} write(s) logged.")
    if session.failed:
        raise typer.Exit(int(ExitStatus.JOBS_FAILED))


class _Session:
    def __init__(self, runtime: Runtime, rules, audit, *, yes: bool):
        self.runtime, self.rules, self.audit, self.yes = runtime, rules, audit, yes
        self.repaired = self.failed = 0

    def handle(self, diagnosis: Diagnosis) -> bool:
        """Returns False when the person quits."""
        from charfix.ui.render import render_story

        render_story(self.runtime.env.out, diagnosis, prefix=self.runtime.env.command_prefix)
        choices = repair_choices(diagnosis)
        if self.yes:
            choice = APPLY if diagnosis.state == State.REPAIRABLE else SKIP
            if choice == SKIP:
                self.runtime.env.out.print(
                    f"skipped: the job is {diagnosis.state.value}; --yes only applies a repairable job's plan")
        else:
            from charfix.ui.prompts import ask_choice

            choice = ask_choice("What now?", choices)
        if choice == QUIT:
            return False
        if choice != SKIP:
            self._act(choice, diagnosis)
        return True

    def _act(self, choice: str, diagnosis: Diagnosis) -> None:
        backends = self.runtime.backends()
        job = diagnosis.job_id
        if choice == CHOOSE:
            from charfix.ui.prompts import ask_character

            picked = ask_character(diagnosis.candidates)
            if picked is None:
                return
            character = diagnosis.candidates[[str(c.id) for c in diagnosis.candidates].index(picked)].id
            check_link(backends, diagnosis, character)
            if not self._confirm(f"Link job {job} to {picked} and save the portrait?"):
                return
            result = link_character(backends, job, character, rules=self.rules, audit=self.audit)
        elif choice in (COMPLETE, FETCH):
            if not self._confirm(f"{'Fetch the provider URL and save' if choice == FETCH else 'Mark completed'} job {job}?"):
                return
            result = complete_job(backends, job, rules=self.rules, save=choice == FETCH, audit=self.audit)
        elif choice == MARK_FAILED:
            if not self._confirm(f"Mark job {job} failed?"):
                return
            result = complete_job(backends, job, rules=self.rules, mark_failed=True, audit=self.audit)
        else:
            if not self._confirm(f"Apply the {len(diagnosis.plan)}-step plan to job {job}?"):
                return
            result = repair_job(backends, job, RepairOptions(rules=self.rules), self.audit)
        self._report(result)

    def _confirm(self, question: str) -> bool:
        if self.yes:
            return True
        from charfix.ui.prompts import ask_confirm

        return ask_confirm(question)

    def _report(self, result) -> None:
        from charfix.ui.results import render_job_result

        render_job_result(self.runtime.env.out, result)
        self.repaired += result.outcome == Outcome.REPAIRED
        self.failed += result.outcome == Outcome.FAILED

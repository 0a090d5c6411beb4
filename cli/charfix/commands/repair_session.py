"""The interactive `repair` flow: a queue of diagnoses, one question per job, every write shown
(plan and target) and confirmed before it is made."""

from __future__ import annotations

from charfix.ui.advice import APPLY, CHOOSE, QUIT, SKIP, repair_choices
from charfix.commands.writing import approve, failed, where
from charfix.errors import UsageError
from charfix.models import Diagnosis, ReasonCode, State
from charfix.models import JobResult, Outcome
from charfix.repair.choices import Choice, preview_choice
from charfix.repair.operations import apply
from charfix.runtime import Runtime

# What each choice asks before it writes: the plan and the target are shown right above it.
QUESTIONS = {
    Choice.CHOOSE: "Link the character and apply these {n} step(s) on {target}?",
    Choice.FETCH: "Fetch the provider URL and save: apply these {n} step(s) on {target}?",
    Choice.COMPLETE: "Mark completed: apply these {n} step(s) on {target}?",
    Choice.MARK_FAILED: "Mark this job failed ({n} step) on {target}?",
    Choice.APPLY: "Apply these {n} step(s) to this job on {target}?",
}


def reason_codes(names: list[str] | None) -> set[ReasonCode]:
    codes = set()
    for name in names or []:
        try:
            codes.add(ReasonCode(name))
        except ValueError:
            raise UsageError(f"--reason: '{name}' is not a reason code; see docs/diagnosis.md for the list") from None
    return codes


def queue_of(runtime: Runtime, diagnoses, codes: set[ReasonCode], decisions) -> list[Diagnosis]:
    """Jobs matching --reason and not decided before; those a person can act on first (a job that
    offers only skip comes last), oldest first within each."""
    wanted = [d for d in diagnoses if not codes or codes & {r.code for r in d.reasons}]
    fresh = [d for d in wanted if not decisions.decided(d.job_id, d.state.value)]
    if len(fresh) < len(wanted):
        runtime.env.err.print(f"{len(wanted) - len(fresh)} job(s) decided in an earlier run left out "
                              "(--restart offers them again)")
    return sorted(fresh, key=lambda d: len(repair_choices(d)) <= 2)  # stable: keeps the age order


class Session:
    def __init__(self, runtime: Runtime, rules, audit, *, yes: bool, decisions=None):
        self.runtime, self.rules, self.audit, self.yes, self.decisions = runtime, rules, audit, yes, decisions
        self.repaired = self.failed = self.needs_person = 0

    def handle(self, diagnosis: Diagnosis, position: int, total: int) -> bool:
        """Returns False when the person quits."""
        from charfix.ui.render import render_story

        out = self.runtime.env.out
        out.print(f"[bold]{position} of {total}[/]")
        render_story(out, diagnosis, prefix=self.runtime.env.command_prefix)
        choices = repair_choices(diagnosis)
        if self.yes:
            choice = APPLY if diagnosis.state == State.REPAIRABLE else SKIP
            if choice == SKIP:
                self.needs_person += 1
                out.print(f"skipped: the job is {diagnosis.state.value}; --yes only applies a repairable job's plan")
        else:
            from charfix.ui.prompts import ask_choice

            choice = ask_choice(f"What now? ({position} of {total})", choices)
        if choice == QUIT:
            return False
        if choice != SKIP:
            self._act(choice, diagnosis)
        elif self.decisions is not None:
            self.decisions.record(diagnosis.job_id, diagnosis.state.value, SKIP)
        return True

    def _act(self, choice: str, diagnosis: Diagnosis) -> None:
        """Preview what the choice writes (repair/choices.py), show it and confirm, then apply it."""
        backends = self.runtime.backends()
        character = None
        if choice == CHOOSE:
            from charfix.ui.prompts import ask_character

            picked = ask_character(diagnosis.candidates)
            if picked is None:
                return
            character = diagnosis.candidates[[str(c.id) for c in diagnosis.candidates].index(picked)].id
        preview = preview_choice(backends, diagnosis, choice, rules=self.rules, character_id=character,
                                 now=self.runtime.now)
        if preview.result.outcome != Outcome.PLANNED:
            self._report(preview.result)
            return
        question = QUESTIONS[Choice(choice)].format(n=len(preview.result.steps), target=where(self.runtime))
        if not approve(self.runtime, preview.result, question, yes=self.yes):
            return
        self._report(apply(backends, preview, self.audit))
        if self.decisions is not None:
            self.decisions.record(diagnosis.job_id, diagnosis.state.value, choice)

    def _report(self, result: JobResult) -> None:
        from charfix.ui.results import render_job_result

        render_job_result(self.runtime.env.out, result)
        self.repaired += result.outcome == Outcome.REPAIRED
        self.failed += failed(result)  # a job that changed under the write too, as complete-job counts it

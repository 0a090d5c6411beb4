"""What to run next for a diagnosis: the one-line hint in tables and the exact command in `diagnose`."""

from __future__ import annotations

from charfix.models import Action, Diagnosis, ReasonCode, State


def next_step(diagnosis: Diagnosis) -> str:
    state = diagnosis.state
    if state == State.REPAIRABLE:
        first, more = diagnosis.plan[0].action.value, len(diagnosis.plan) - 1
        return f"{first} +{more} more" if more else first
    if state == State.NEEDS_REVIEW:
        if diagnosis.candidates:
            return f"choose a character ({len(diagnosis.candidates)} candidate(s))"
        if ReasonCode.OUTPUT_EXTERNAL_URL in {r.code for r in diagnosis.reasons}:
            return "try fetching the provider URL"
        return "a person must look"
    if state == State.FAILED and any(s.action == Action.MARK_FAILED for s in diagnosis.plan):
        return "mark_failed (on request)"
    if state == State.LOST:
        return "unrecoverable: tell the user"
    return "-"


def command_for(diagnosis: Diagnosis, prefix: str = "charfix") -> str | None:
    """The charfix command that carries out the plan, or lets a person decide; `prefix` carries the
    global options the run needed (`charfix --demo`), so the command runs as printed."""
    job = diagnosis.job_id
    actions = [step.action for step in diagnosis.plan]
    if diagnosis.state == State.FAILED and Action.MARK_FAILED in actions:
        return f"{prefix} complete-job {job} --mark-failed"
    if diagnosis.state == State.NEEDS_REVIEW and diagnosis.candidates:
        return f"{prefix} link-character {job} --character <one of the candidates>"
    if diagnosis.state == State.NEEDS_REVIEW and ReasonCode.OUTPUT_EXTERNAL_URL in {r.code for r in diagnosis.reasons}:
        return f"{prefix} complete-job {job}"
    if diagnosis.state != State.REPAIRABLE:
        return None
    if Action.LINK_CHARACTER in actions:
        return f"{prefix} link-character {job} --character {diagnosis.character_id}"
    if Action.COMPLETE_JOB in actions:
        return f"{prefix} complete-job {job}"
    return f"{prefix} repair {job}"


# What the interactive `repair` offers for a diagnosis.
APPLY, CHOOSE, COMPLETE, FETCH, MARK_FAILED, SKIP, QUIT = "apply", "choose", "complete", "fetch", "mark", "skip", "quit"


def repair_choices(diagnosis: Diagnosis) -> list[tuple[str, str]]:
    actions = {step.action for step in diagnosis.plan}
    codes = {reason.code for reason in diagnosis.reasons}
    choices = []
    if diagnosis.state == State.REPAIRABLE:
        choices.append((APPLY, f"apply the plan ({len(diagnosis.plan)} step(s))"))
    if diagnosis.state == State.NEEDS_REVIEW and diagnosis.candidates:
        choices.append((CHOOSE, f"choose the character ({len(diagnosis.candidates)} candidate(s))"))
    if ReasonCode.OUTPUT_EXTERNAL_URL in codes:
        choices.append((FETCH, "fetch the provider URL and save the portrait"))
    elif diagnosis.state == State.NEEDS_REVIEW and Action.COMPLETE_JOB in actions:
        choices.append((COMPLETE, "complete the job only (its output exists)"))
    if Action.MARK_FAILED in actions:
        choices.append((MARK_FAILED, "mark the job failed"))
    choices += [(SKIP, "skip"), (QUIT, "quit")]
    return choices

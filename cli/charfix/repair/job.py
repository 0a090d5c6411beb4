"""Carrying out a diagnosis's plan, one job at a time, safely and idempotently.

For each job: take its row lock (skip it if another run holds it), re-read the facts and diagnose
again inside the lock, then apply only the steps still missing: objects first (deterministic keys,
so a re-run overwrites the same object), then the rows, in one transaction. A write that finds its
row changed (ChangedError) ends the job's attempt: it is diagnosed again and reported as it is now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from uuid import UUID

from charfix.backends import Backends
from charfix.diagnosis import Rules, diagnose
from charfix.diagnosis import facts as f
from charfix.errors import BackendError, ChangedError, CharfixError, ConnectionLostError, NotFoundError, RefusedError
from charfix.models import Action, Diagnosis, Job, JobFacts, JobResult, LinkCharacter, Outcome, State, Step
from charfix.queries.scan import collect_facts
from charfix.audit.log import AuditError, AuditLog
from charfix.repair.steps import StepContext, apply_step
from charfix.repair.unit import Clock, Recorder, Unit, utc_now

SAVE_ACTIONS = frozenset(Action) - {Action.MARK_FAILED}
__all__ = ["SAVE_ACTIONS", "JobResult", "Outcome", "RepairOptions", "planned", "repair_job"]


@dataclass(frozen=True)
class RepairOptions:
    rules: Rules
    states: frozenset[State] = frozenset({State.REPAIRABLE})
    actions: frozenset[Action] = SAVE_ACTIONS
    character_id: UUID | None = None  # a person's choice for a name-only job
    dry_run: bool = False
    now: Clock = utc_now  # the time the repairs write (a failed-at); the rules' `now` is the diagnosis's


def repair_job(backends: Backends, job_id: UUID, options: RepairOptions,
               audit: AuditLog | Recorder | Sequence[Recorder] | None) -> JobResult:
    """Repair one job; never raises for the job's own trouble, which is reported in the result.
    An audit log that cannot be written stops the whole run (AuditError propagates)."""
    if options.dry_run:
        return preview_job(backends, job_id, options)
    unit = Unit(backends, audit, now=options.now)
    try:
        with unit.job(job_id) as got:
            if not got:
                return JobResult(job_id, Outcome.SKIPPED, message="another charfix run is repairing this job")
            return _repair_locked(unit, job_id, options)
    except (AuditError, ConnectionLostError):
        raise
    except ChangedError as exc:
        return rediagnosed(backends, job_id, options, exc)
    except CharfixError as exc:
        return JobResult(job_id, Outcome.FAILED, message=exc.message)


def preview_job(backends: Backends, job_id: UUID, options: RepairOptions) -> JobResult:
    """`checked_preview` for --dry-run and the interactive choices: the job's own trouble (a failed
    read, a forbidden choice) is reported in the result, never raised."""
    try:
        return checked_preview(backends, job_id, options)
    except CharfixError as exc:
        return JobResult(job_id, Outcome.FAILED, message=exc.message)


def checked_preview(backends: Backends, job_id: UUID, options: RepairOptions) -> JobResult:
    """What a repair would do now (outcome PLANNED), or why it would do nothing: the job read once,
    a person's choice of character checked against the rules, no lock and no write privilege needed.
    A job that is not there (NotFoundError) or a forbidden choice (RefusedError) raises."""
    facts, stored = read_facts(backends, job_id, options, missing=NotFoundError(f"no job with id {job_id}"))
    if options.character_id is not None:
        check_choice(backends, facts, stored, options.character_id)
    return planned(diagnose(facts, options.rules), options, needs_link=_needs_link(stored, options))


def rediagnosed(backends: Backends, job_id: UUID, options: RepairOptions, changed: ChangedError) -> JobResult:
    """Someone else wrote to the job while this run repaired it (over REST: maybe another run). It is
    diagnosed again and reported as it is now, never overwritten. A run reports a job repaired only
    when its own writes finished the plan, so of two racing runs exactly one does."""
    try:
        diagnosis = diagnose(read_facts(backends, job_id, replace(options, character_id=None))[0], options.rules)
    except CharfixError as exc:
        return JobResult(job_id, Outcome.FAILED, message=f"{changed.message}; re-diagnosing failed: {exc.message}")
    return JobResult(job_id, Outcome.CHANGED, state=diagnosis.state, diagnosis=diagnosis,
                     message=f"{changed.message}; diagnosed again: {diagnosis.state.value}")


def _repair_locked(unit: Unit, job_id: UUID, options: RepairOptions) -> JobResult:
    facts, stored = read_facts(unit.backends, job_id, options)
    if options.character_id is not None:
        check_choice(unit.backends, facts, stored, options.character_id)  # the facts may have changed
    diagnosis = diagnose(facts, options.rules)
    result = planned(diagnosis, options, needs_link=_needs_link(stored, options))
    if result.outcome != Outcome.PLANNED:
        return result
    # Writes are conditional on the job as stored, not on the copy that carried the person's choice.
    context = StepContext(backends=unit.backends, facts=facts.model_copy(update={"job": stored}),
                          diagnosis=diagnosis, unit=unit)
    for step in result.steps:
        apply_step(context, step)
    result.outcome = Outcome.REPAIRED
    return result


def planned(diagnosis: Diagnosis, options: RepairOptions, *, needs_link: bool = False) -> JobResult:
    """The steps a repair applies to this diagnosis (outcome PLANNED), or why it applies none."""
    steps = _steps(diagnosis, options, needs_link=needs_link)
    result = JobResult(diagnosis.job_id, Outcome.ALREADY_FINE, state=diagnosis.state, diagnosis=diagnosis)
    if diagnosis.state not in options.states and steps:
        result.outcome, result.message = Outcome.SKIPPED, f"state is {diagnosis.state.value}"
        return result
    if not steps:
        result.message = "nothing to do" if diagnosis.state == State.SAVED else f"state is {diagnosis.state.value}"
        result.outcome = Outcome.ALREADY_FINE if diagnosis.state == State.SAVED else Outcome.SKIPPED
        return result
    result.steps, result.outcome = steps, Outcome.PLANNED
    return result


def read_facts(backends: Backends, job_id: UUID, options: RepairOptions, *,
               missing: CharfixError | None = None) -> tuple[JobFacts, Job]:
    """The job's facts, and the job as stored (the writes are conditional on it). With a person's
    choice of character: the facts as if the choice were already in the metadata."""
    jobs = backends.repository.jobs_by_id([job_id])
    if not jobs:
        raise missing or BackendError(f"job {job_id} disappeared")
    job = jobs[0]
    read = job
    if options.character_id is not None:
        metadata = f.as_dict(job.metadata)
        read = job.model_copy(update={"metadata": {**metadata, "character_id": str(options.character_id)}})
    return collect_facts(backends, [read], link_window=options.rules.link_window)[0], job


def check_choice(backends: Backends, facts: JobFacts, stored: Job, character_id: UUID) -> None:
    """The ownership rule, whatever flags were given: only a character of the job's own user, and never
    in place of a character the job already names. Decided from the facts read (they hold the chosen
    character, whoever owns it); only a character they lack is looked up, to say whether it exists."""
    character = f.character_by_id(facts, character_id)
    if character is None:
        character = next((c for c in backends.repository.characters_for([character_id], []) if c.id == character_id),
                         None)
    if character is None:
        raise NotFoundError(f"no character with id {character_id}")
    if character.user_id != stored.user_id:
        raise RefusedError(
            f"character {character_id} belongs to another user; charfix never links a job to another user's character"
        )
    current = f.as_uuid(f.as_dict(stored.metadata).get("character_id"))
    if current is not None and current != character_id:
        raise RefusedError(
            f"job {stored.id} already names character {current}; charfix does not rebind a job",
            hint="if that character is wrong, fix the job's metadata by hand and record why",
        )


def _needs_link(stored: Job, options: RepairOptions) -> bool:
    """A person chose a character the job's metadata does not name yet: link_character must write it."""
    named = f.as_uuid(f.as_dict(stored.metadata).get("character_id"))
    return options.character_id is not None and named != options.character_id


def _steps(diagnosis: Diagnosis, options: RepairOptions, *, needs_link: bool) -> list[Step]:
    steps = [s for s in diagnosis.plan if s.action in options.actions]
    if (needs_link and options.character_id is not None and diagnosis.state == State.REPAIRABLE
            and Action.LINK_CHARACTER in options.actions):
        link = Step(
            action=Action.LINK_CHARACTER,
            description=f"Write character_id {options.character_id} into the job's metadata (the name stays).",
            params=LinkCharacter(character_id=options.character_id),
        )
        steps.insert(1 if steps and steps[0].action == Action.COMPLETE_JOB else 0, link)
    return steps

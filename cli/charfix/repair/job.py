"""Carrying out a diagnosis's plan, one job at a time, safely and idempotently.

For each job: take its row lock (skip it if another run holds it), re-read the facts and diagnose
again inside the lock, then apply only the steps still missing: objects first (deterministic keys,
so a re-run overwrites the same object), then the rows, in one transaction. A write that finds its
row changed (ChangedError) ends the job's attempt: it is diagnosed again and reported as it is now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from charfix.backends import Backends
from charfix.diagnosis import Rules, diagnose
from charfix.diagnosis import facts as f
from charfix.errors import BackendError, ChangedError, CharfixError, ConnectionLostError
from charfix.models import Action, Diagnosis, Job, JobFacts, JobResult, Outcome, State, Step
from charfix.queries.scan import collect_facts
from charfix.repair.audit import AuditError, AuditLog
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
        # A preview takes no lock and needs no write privilege: it only reads and plans.
        try:
            return _repair_locked(Unit(backends, now=options.now), job_id, options)
        except CharfixError as exc:
            return JobResult(job_id, Outcome.FAILED, message=exc.message)
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


def rediagnosed(backends: Backends, job_id: UUID, options: RepairOptions, changed: ChangedError) -> JobResult:
    """Someone else wrote to the job while this run repaired it (over REST: maybe another run). It is
    diagnosed again and reported as it is now, never overwritten. A run reports a job repaired only
    when its own writes finished the plan, so of two racing runs exactly one does."""
    try:
        diagnosis = diagnose(_facts(backends, job_id, None, options.rules)[0], options.rules)
    except CharfixError as exc:
        return JobResult(job_id, Outcome.FAILED, message=f"{changed.message}; re-diagnosing failed: {exc.message}")
    return JobResult(job_id, Outcome.CHANGED, state=diagnosis.state, diagnosis=diagnosis,
                     message=f"{changed.message}; diagnosed again: {diagnosis.state.value}")


def _repair_locked(unit: Unit, job_id: UUID, options: RepairOptions) -> JobResult:
    facts, real_job = _facts(unit.backends, job_id, options.character_id, options.rules)
    diagnosis = diagnose(facts, options.rules)
    result = planned(diagnosis, options, needs_link=real_job is not None)
    if result.outcome != Outcome.PLANNED or options.dry_run:
        return result
    # Writes are conditional on the job as stored, not on the copy that carried the person's choice.
    stored = facts if real_job is None else facts.model_copy(update={"job": real_job})
    context = StepContext(backends=unit.backends, facts=stored, diagnosis=diagnosis, unit=unit)
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


def _facts(backends: Backends, job_id: UUID, character_id: UUID | None, rules: Rules) -> tuple[JobFacts, Job | None]:
    """The job's facts, read inside its lock. With a person's choice of character: the facts as if
    the choice were already in the metadata, and the job as stored when link_character must write it."""
    jobs = backends.repository.jobs_by_id([job_id])
    if not jobs:
        raise BackendError(f"job {job_id} disappeared")
    job = jobs[0]
    if character_id is None:
        return collect_facts(backends, [job], link_window=rules.link_window)[0], None
    metadata = f.as_dict(job.metadata)
    chosen = job.model_copy(update={"metadata": {**metadata, "character_id": str(character_id)}})
    facts = collect_facts(backends, [chosen], link_window=rules.link_window)[0]
    return facts, (job if f.as_uuid(metadata.get("character_id")) != character_id else None)


def _steps(diagnosis: Diagnosis, options: RepairOptions, *, needs_link: bool) -> list[Step]:
    steps = [s for s in diagnosis.plan if s.action in options.actions]
    if needs_link and diagnosis.state == State.REPAIRABLE and Action.LINK_CHARACTER in options.actions:
        link = Step(
            action=Action.LINK_CHARACTER,
            description=f"Write character_id {options.character_id} into the job's metadata (the name stays).",
            params={"character_id": str(options.character_id)},
        )
        steps.insert(1 if steps and steps[0].action == Action.COMPLETE_JOB else 0, link)
    return steps

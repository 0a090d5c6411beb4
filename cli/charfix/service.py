"""The repair commands as library calls: what `complete-job`, `link-character` and
`backfill-portraits` do, without any printing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from uuid import UUID

from charfix import facts as f
from charfix.audit import AuditLog
from charfix.diagnosis import Rules
from charfix.errors import NotFoundError, RefusedError
from charfix.models import Action, Diagnosis, State
from charfix.repair import SAVE_ACTIONS, JobResult, Outcome, RepairOptions, repair_job
from charfix.scan import Backends, diagnose_ids
from charfix.selection import Selection, Tally, selected

NO_OUTPUT_STATES = (State.FAILED, State.LOST)


def complete_job(
    backends: Backends, job_id: UUID, *, rules: Rules, save: bool = True, mark_failed: bool = False,
    dry_run: bool = False, audit: AuditLog | None = None,
) -> JobResult:
    diagnosis = diagnose_ids(backends, [job_id], rules)[0]
    if mark_failed:
        if diagnosis.state != State.FAILED or Action.MARK_FAILED not in {s.action for s in diagnosis.plan}:
            raise RefusedError(
                f"job {job_id} is {diagnosis.state.value} with status '{diagnosis.status}'; "
                "--mark-failed only records a queued/processing job that never produced output"
            )
        options = RepairOptions(rules=rules, states=frozenset({State.FAILED}),
                                actions=frozenset({Action.MARK_FAILED}), dry_run=dry_run)
        return repair_job(backends, job_id, options, audit)
    if diagnosis.state in NO_OUTPUT_STATES:
        raise RefusedError(
            f"job {job_id} has no output to complete ({diagnosis.state.value}: {', '.join(diagnosis.codes)})",
            hint="--mark-failed records a job that never produced output as failed" if diagnosis.state == State.FAILED else None,
        )
    actions = SAVE_ACTIONS if save else frozenset({Action.COMPLETE_JOB})
    options = RepairOptions(rules=rules, states=frozenset({State.REPAIRABLE, State.NEEDS_REVIEW}),
                            actions=actions, dry_run=dry_run)
    return repair_job(backends, job_id, options, audit)


def link_character(
    backends: Backends, job_id: UUID, character_id: UUID, *, rules: Rules, save: bool = True,
    dry_run: bool = False, audit: AuditLog | None = None,
) -> JobResult:
    diagnosis = diagnose_ids(backends, [job_id], rules)[0]
    check_link(backends, diagnosis, character_id)
    actions = SAVE_ACTIONS if save else frozenset({Action.LINK_CHARACTER})
    options = RepairOptions(rules=rules, actions=actions, character_id=character_id, dry_run=dry_run)
    return repair_job(backends, job_id, options, audit)


def check_link(backends: Backends, diagnosis: Diagnosis, character_id: UUID) -> None:
    """The ownership rule, whatever flags were given: only a character of the job's own user."""
    found = backends.repository.characters_for([character_id], [])
    character = next((c for c in found if c.id == character_id), None)
    if character is None:
        raise NotFoundError(f"no character with id {character_id}")
    if character.user_id != diagnosis.user_id:
        raise RefusedError(
            f"character {character_id} belongs to another user; charfix never links a job to another user's character"
        )
    job = backends.repository.jobs_by_id([diagnosis.job_id])[0]
    current = f.as_uuid(f.as_dict(job.metadata).get("character_id"))
    if current is not None and current != character_id:
        raise RefusedError(
            f"job {diagnosis.job_id} already names character {current}; charfix does not rebind a job",
            hint="if that character is wrong, fix the job's metadata by hand and record why",
        )


@dataclass
class BackfillReport:
    examined: int = 0
    repaired: list[JobResult] = field(default_factory=list)
    already_fine: int = 0
    planned: list[JobResult] = field(default_factory=list)
    skipped_by_state: Counter = field(default_factory=Counter)
    skipped_other: list[JobResult] = field(default_factory=list)
    changed: list[JobResult] = field(default_factory=list)  # written by someone else meanwhile
    failed: list[JobResult] = field(default_factory=list)
    capped: int = 0

    def add(self, result: JobResult) -> None:
        match result.outcome:
            case Outcome.REPAIRED:
                self.repaired.append(result)
            case Outcome.PLANNED:
                self.planned.append(result)
            case Outcome.ALREADY_FINE:
                self.already_fine += 1
            case Outcome.FAILED:
                self.failed.append(result)
            case Outcome.CHANGED:
                self.changed.append(result)
            case Outcome.SKIPPED if result.state is not None:
                self.skipped_by_state[result.state.value] += 1
            case _:
                self.skipped_other.append(result)

    def to_json(self) -> dict:
        return {
            "examined": self.examined,
            "repaired": len(self.repaired),
            "already_fine": self.already_fine,
            "planned": len(self.planned),
            "skipped_by_state": dict(self.skipped_by_state),
            "skipped_locked": len(self.skipped_other),
            "changed_meanwhile": len(self.changed),
            "not_attempted_over_max": self.capped,
            "failed": len(self.failed),
            "jobs": [r.to_json() for r in
                     self.repaired + self.planned + self.failed + self.skipped_other + self.changed],
        }


def backfill(
    backends: Backends, selection: Selection, *, max_jobs: int | None = None, concurrency: int = 1,
    dry_run: bool = False, audit: AuditLog | None = None, open_worker: Callable[[], Backends] | None = None,
    progress: Callable[[JobResult], None] | None = None,
) -> BackfillReport:
    """Repair every repairable job of the selection; other states are counted, never touched."""
    report = BackfillReport()
    options = RepairOptions(rules=selection.rules, dry_run=dry_run)
    work = list(_repairable(backends, selection, report, max_jobs))
    if concurrency <= 1 or open_worker is None or len(work) <= 1:
        for job_id in work:
            _add(report, repair_job(backends, job_id, options, audit), progress)
        return report
    _parallel(work, options, audit, concurrency, open_worker, report, progress)
    return report


def _repairable(backends: Backends, selection: Selection, report: BackfillReport, max_jobs: int | None) -> Iterator[UUID]:
    tally = Tally()
    attempted = 0
    for diagnosis in selected(backends, selection, tally):
        if diagnosis.state != State.REPAIRABLE:
            continue
        if max_jobs is not None and attempted >= max_jobs:
            report.capped += 1
            continue
        attempted += 1
        yield diagnosis.job_id
    report.examined = tally.examined
    for state, count in tally.by_state.items():
        if state == State.SAVED:
            report.already_fine += count
        elif state != State.REPAIRABLE:
            report.skipped_by_state[state.value] += count


def _parallel(work: list[UUID], options: RepairOptions, audit: AuditLog | None, concurrency: int,
              open_worker: Callable[[], Backends], report: BackfillReport, progress) -> None:
    """Each worker thread has its own connection (one transaction per job) and storage client."""
    local = threading.local()
    opened: list[Backends] = []
    guard = threading.Lock()

    def run(job_id: UUID) -> JobResult:
        if not hasattr(local, "backends"):
            local.backends = open_worker()
            with guard:
                opened.append(local.backends)
        return repair_job(local.backends, job_id, options, audit)

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for result in pool.map(run, work):
                _add(report, result, progress)
    finally:
        for backends in opened:
            backends.repository.close()


def _add(report: BackfillReport, result: JobResult, progress: Callable[[JobResult], None] | None) -> None:
    report.add(result)
    if progress is not None:
        progress(result)

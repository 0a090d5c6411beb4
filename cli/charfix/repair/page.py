"""Repairing a page of jobs in one transaction: what `backfill-portraits` does over Postgres.

One statement locks the page's job rows (SKIP LOCKED: a job another run holds is skipped), one batched
read gathers the facts of the jobs it locked, and each job is diagnosed again and repaired inside its
own savepoint, so one job's failure rolls back only that job's writes. The page's audit lines are
written and synced once, just before the page commits. The guarantees are those of `repair_job`:
only the per-job costs (a lock, a re-read, an fsync) are paid once per page instead.

Jobs of one page may share a character. A job whose facts name a character (or library row) that an
earlier job of the page wrote is not repaired on facts read before that write: it is handed back, to
be locked and read again in a later page, after this one has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from charfix.backends import Backends
from charfix.diagnosis import diagnose
from charfix.errors import ChangedError, CharfixError, ConnectionLostError
from charfix.models import Action, JobFacts, JobResult, LibraryItem, Outcome
from charfix.queries.scan import collect_facts
from charfix.audit.log import AuditError, AuditLog
from charfix.repair.job import RepairOptions, planned, rediagnosed
from charfix.repair.steps import StepContext, apply_step
from charfix.repair.unit import Recorder, Unit

LOCKED_ELSEWHERE = "another charfix run is repairing this job"
RowsAt = dict[tuple[UUID, str], list[LibraryItem]]


def pages_supported(backends: Backends) -> bool:
    """Pages need transactions and savepoints: the Postgres adapter has them, the REST one does not."""
    return backends.repository.pages() is not None


@dataclass
class PageResult:
    results: list[JobResult] = field(default_factory=list)
    deferred: list[UUID] = field(default_factory=list)  # to lock and read again in a later page


def repair_page(backends: Backends, job_ids: Sequence[UUID], options: RepairOptions,
                audit: AuditLog | Recorder | Sequence[Recorder] | None) -> PageResult:
    """Repair a page of jobs; a job's own trouble is reported in its result. An audit log that cannot be
    written (AuditError) and a lost connection (ConnectionLostError) roll back the page and propagate."""
    if options.dry_run:
        return _preview(backends, job_ids, options)
    page = PageResult()
    unit = Unit(backends, audit, now=options.now)
    try:
        with unit.page(job_ids) as jobs:
            locked = {job.id for job in jobs}
            page.results += [JobResult(i, Outcome.SKIPPED, message=LOCKED_ELSEWHERE) for i in job_ids if i not in locked]
            _repair_locked(unit, collect_facts(backends, jobs, link_window=options.rules.link_window), options, page)
    except (AuditError, ConnectionLostError):
        raise
    except CharfixError as exc:
        return _page_failed(page, job_ids, exc.message)
    return page


def _page_failed(page: PageResult, job_ids: Sequence[UUID], message: str) -> PageResult:
    """The page as a whole failed (its lock, its read or its commit): none of its row writes happened."""
    kept = {r.job_id: r for r in page.results if r.outcome != Outcome.REPAIRED}
    failed = [JobResult(i, Outcome.FAILED, message=message) for i in job_ids if i not in kept and i not in page.deferred]
    return PageResult(results=[*kept.values(), *failed], deferred=page.deferred)


def _repair_locked(unit: Unit, facts: list[JobFacts], options: RepairOptions, page: PageResult) -> None:
    backends = unit.backends
    plans = [(item, planned(diagnose(item, options.rules), options)) for item in facts]
    changed = _lock_characters(backends, plans)
    rows_at = _rows_at(unit, plans)
    written: set[UUID] = set()  # characters and library rows an earlier job of this page wrote
    for item, result in plans:
        if written & _read_rows(item) or changed & {c.id for c in item.characters}:
            page.deferred.append(item.job.id)
            continue
        if result.outcome == Outcome.PLANNED:
            result = _apply(unit, item, result, options, rows_at)
            if result.outcome == Outcome.REPAIRED:
                written |= _written_rows(result)
        page.results.append(result)


def _lock_characters(backends: Backends, plans: list[tuple[JobFacts, JobResult]]) -> set[UUID]:
    """Lock every character the page will write, in one global order (writes.lock_characters), so two
    overlapping runs never deadlock. Returns those another run changed since they were read: their
    jobs are handed back, to be read again in a later page."""
    wanted = {UUID(step.params["character_id"]) for _, result in plans if result.outcome == Outcome.PLANNED
              for step in result.steps if "character_id" in step.params}
    seen = {c.id: c for item, _ in plans for c in item.characters}
    pages = backends.repository.pages()
    locked = pages.lock_characters(sorted(wanted)) if pages is not None else []  # not None: pages_supported
    return {c.id for c in locked if seen.get(c.id) != c}


def _rows_at(unit: Unit, plans: list[tuple[JobFacts, JobResult]]) -> RowsAt:
    """The idempotency look-up of every library row the page may insert, in one statement: inside the
    page's lock only its own jobs can add a row at their keys, and each key names one job."""
    paths = sorted({(item.job.user_id, step.params["storage_path"]) for item, result in plans for step in result.steps
                    if result.outcome == Outcome.PLANNED and step.action == Action.INSERT_LIBRARY_ROW})
    found: RowsAt = {path: [] for path in paths}
    for row in unit.page_writer.library_items_at_paths(paths):
        found[(row.user_id, row.storage_path)].append(row)
    return found


def _apply(unit: Unit, facts: JobFacts, result: JobResult, options: RepairOptions, rows_at: RowsAt) -> JobResult:
    """The job's steps inside its savepoint: an error rolls back this job's row writes only. A row that
    someone else changed meanwhile: the job is read and diagnosed again (still inside the page's lock)."""
    assert result.diagnosis is not None  # a planned result carries its diagnosis
    context = StepContext(backends=unit.backends, facts=facts, diagnosis=result.diagnosis, unit=unit, rows_at=rows_at)
    try:
        with unit.savepoint(result.job_id):
            for step in result.steps:
                apply_step(context, step)
    except (AuditError, ConnectionLostError):
        raise
    except ChangedError as exc:
        return rediagnosed(unit.backends, result.job_id, options, exc)
    except CharfixError as exc:
        result.outcome, result.message = Outcome.FAILED, exc.message
        return result
    result.outcome = Outcome.REPAIRED
    return result


def _read_rows(facts: JobFacts) -> set[UUID]:
    return {c.id for c in facts.characters} | {r.id for r in facts.library_items}


def _written_rows(result: JobResult) -> set[UUID]:
    written: set[UUID] = set()
    for step in result.steps:
        if step.action == Action.UPDATE_CHARACTER_IMAGE:
            written.add(UUID(step.params["character_id"]))
        elif step.action == Action.UPGRADE_LIBRARY_ROW:
            written.add(UUID(step.params["library_row_id"]))
    return written


def _preview(backends: Backends, job_ids: Sequence[UUID], options: RepairOptions) -> PageResult:
    """--dry-run: no lock and no write privilege needed; read the page, diagnose, plan."""
    page = PageResult()
    try:
        jobs = backends.repository.jobs_by_id(job_ids)
        facts = collect_facts(backends, jobs, link_window=options.rules.link_window)
    except CharfixError as exc:
        page.results = [JobResult(i, Outcome.FAILED, message=exc.message) for i in job_ids]
        return page
    found = {job.id for job in jobs}
    page.results = [planned(diagnose(item, options.rules), options) for item in facts]
    page.results += [JobResult(i, Outcome.FAILED, message=f"job {i} disappeared") for i in job_ids if i not in found]
    return page

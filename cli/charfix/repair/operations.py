"""The repair commands as library calls: what `complete-job`, `link-character` and
`backfill-portraits` do, without any printing."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from charfix.diagnosis import facts as f
from charfix.repair.audit import AuditLog
from charfix.diagnosis import Rules
from charfix.errors import NotFoundError, RefusedError
from charfix.models import Action, BackfillReport, Diagnosis, JobResult, State
from charfix.repair.job import SAVE_ACTIONS, RepairOptions, repair_job
from charfix.repair.page import pages_supported, repair_page
from charfix.backends import Backends
from charfix.queries.scan import diagnose_ids
from charfix.queries.selection import Selection, Tally, selected

NO_OUTPUT_STATES = (State.FAILED, State.LOST)
BACKFILL_PAGE = 100  # jobs locked, read and committed together (Postgres)


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


def backfill(
    backends: Backends, selection: Selection, *, max_jobs: int | None = None, concurrency: int = 1,
    dry_run: bool = False, audit: AuditLog | None = None, open_worker: Callable[[], Backends] | None = None,
    progress: Callable[[JobResult], None] | None = None, page_size: int = BACKFILL_PAGE,
    stop: threading.Event | None = None,
) -> BackfillReport:
    """Repair every repairable job of the selection; other states are counted, never touched.
    Over Postgres a page of jobs is repaired in one transaction (repair_pages); over REST, job by job.
    Once `stop` is set (a signal), no new page or job starts; the report counts what was left."""
    report = BackfillReport()
    stop = stop or threading.Event()
    options = RepairOptions(rules=selection.rules, dry_run=dry_run)
    work = list(_repairable(backends, selection, report, max_jobs, stop))
    lanes = concurrency if open_worker is not None and len(work) > 1 else 1
    if pages_supported(backends):
        _in_pages(backends, work, options, audit, lanes, open_worker, report, progress, page_size, stop)
    elif lanes <= 1:
        for job_id, _ in work:
            if stop.is_set():
                break
            _add(report, repair_job(backends, job_id, options, audit), progress)
    else:
        _parallel([job_id for job_id, _ in work], options, audit, concurrency, open_worker, report, progress, stop)
    report.not_attempted = len(work) - report.attempted
    return report


def _repairable(backends: Backends, selection: Selection, report: BackfillReport,
                max_jobs: int | None, stop: threading.Event) -> Iterator[tuple[UUID, UUID]]:
    tally = Tally()
    attempted = 0
    for diagnosis in selected(backends, selection, tally):
        if stop.is_set():
            report.scan_stopped = True
            break
        if diagnosis.state != State.REPAIRABLE:
            continue
        if max_jobs is not None and attempted >= max_jobs:
            report.capped += 1
            continue
        attempted += 1
        yield diagnosis.job_id, diagnosis.user_id
    report.examined = tally.examined
    for state, count in tally.by_state.items():
        if state == State.SAVED:
            report.already_fine += count
        elif state != State.REPAIRABLE:
            report.skipped_by_state[state.value] += count


def _in_pages(backends: Backends, work: list[tuple[UUID, UUID]], options: RepairOptions, audit: AuditLog | None,
              lanes: int, open_worker: Callable[[], Backends] | None, report: BackfillReport, progress,
              page_size: int, stop: threading.Event) -> None:
    """Each lane repairs its pages in turn, on its own connection. A user's jobs all go to one lane:
    a repair writes only rows of the job's user, so two lanes never wait for each other's row locks."""
    by_lane: list[list[UUID]] = [[] for _ in range(lanes)]
    for job_id, user_id in work:
        by_lane[user_id.int % lanes].append(job_id)
    if lanes == 1:
        for result in _lane(backends, by_lane[0], options, audit, page_size, stop):
            _add(report, result, progress)
        return
    _parallel_lanes([lane for lane in by_lane if lane], options, audit, open_worker, report, progress, page_size, stop)


def _lane(backends: Backends, jobs: list[UUID], options: RepairOptions, audit: AuditLog | None, page_size: int,
          stop: threading.Event) -> Iterator[JobResult]:
    """Pages of `page_size` jobs, in order; a job handed back by its page leads the next one."""
    waiting = list(jobs)
    while waiting and not stop.is_set():
        page, waiting = waiting[:page_size], waiting[page_size:]
        done = repair_page(backends, page, options, audit)
        waiting = done.deferred + waiting
        yield from done.results


def _parallel_lanes(lanes: list[list[UUID]], options: RepairOptions, audit: AuditLog | None,
                    open_worker: Callable[[], Backends], report: BackfillReport, progress, page_size: int,
                    stop: threading.Event) -> None:
    """One thread per lane; results come back to this thread as each page finishes. A signal, or the
    first error that stops a run (audit log, lost connection), stops the lanes after their current page."""
    results: queue.SimpleQueue = queue.SimpleQueue()

    def run(jobs: list[UUID]) -> None:
        backends = open_worker()
        try:
            for result in _lane(backends, jobs, options, audit, page_size, stop):
                results.put(result)
        except BaseException:
            stop.set()
            raise
        finally:
            backends.repository.close()
            results.put(None)

    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        futures = [pool.submit(run, jobs) for jobs in lanes]
        finished = 0
        try:
            while finished < len(lanes):
                result = results.get()
                if result is None:
                    finished += 1
                else:
                    _add(report, result, progress)
        finally:
            stop.set()  # Ctrl-C here: the lanes stop after their current page
    for future in futures:
        future.result()  # re-raise the error that stopped a lane


def _parallel(work: list[UUID], options: RepairOptions, audit: AuditLog | None, concurrency: int,
              open_worker: Callable[[], Backends], report: BackfillReport, progress, stop: threading.Event) -> None:
    """Job by job (REST): each worker thread has its own client and storage client. Once `stop` is set,
    the workers start no new job."""
    local = threading.local()
    opened: list[Backends] = []
    guard = threading.Lock()

    def run(job_id: UUID) -> JobResult | None:
        if stop.is_set():
            return None
        if not hasattr(local, "backends"):
            local.backends = open_worker()
            with guard:
                opened.append(local.backends)
        return repair_job(local.backends, job_id, options, audit)

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for result in pool.map(run, work):
                if result is not None:
                    _add(report, result, progress)
    finally:
        for backends in opened:
            backends.repository.close()


def _add(report: BackfillReport, result: JobResult, progress: Callable[[JobResult], None] | None) -> None:
    report.attempted += 1
    report.add(result)
    if progress is not None:
        progress(result)

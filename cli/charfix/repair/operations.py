"""The repair commands as library calls: what `complete-job`, `link-character`, `repair` and
`backfill-portraits` do, without any printing.

A one-job command is a checked preview, then its application: the preview reads the job once,
diagnoses it, checks the request against the rules (no output to complete, another user's
character, a job that already names a character) and plans; `apply` takes the job's lock, reads it
again and writes what is still missing (repair/job.py). So a confirmed write reads the job twice."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from uuid import UUID

from charfix.backends import Backends
from charfix.diagnosis import Rules
from charfix.errors import RefusedError
from charfix.models import Action, BackfillReport, JobResult, Outcome, State
from charfix.queries.scan import diagnose_ids
from charfix.queries.selection import Selection, Tally, selected
from charfix.audit.log import AuditLog
from charfix.repair.job import SAVE_ACTIONS, RepairOptions, checked_preview, planned, preview_job, repair_job
from charfix.repair.page import pages_supported, repair_page
from charfix.repair.unit import Clock, Recorder, utc_now

NO_OUTPUT_STATES = (State.FAILED, State.LOST)
BACKFILL_PAGE = 100  # jobs locked, read and committed together (Postgres)
Audit = AuditLog | Recorder | Sequence[Recorder] | None
Progress = Callable[[JobResult], None] | None


@dataclass(frozen=True)
class Preview:
    """A checked plan: the job's diagnosis and the steps a repair would apply (outcome PLANNED), or
    why it applies none; and the options `apply` carries it out with."""

    result: JobResult
    options: RepairOptions

    @property
    def job_id(self) -> UUID:
        return self.result.job_id


def apply(backends: Backends, preview: Preview, audit: Audit = None) -> JobResult:
    """Carry out a preview: under the job's lock the job is read and diagnosed again, and only the
    steps still missing are written. A preview with nothing to do is its own result."""
    if preview.result.outcome != Outcome.PLANNED:
        return preview.result
    return repair_job(backends, preview.job_id, replace(preview.options, dry_run=False), audit)


def preview_complete_job(backends: Backends, job_id: UUID, *, rules: Rules, save: bool = True,
                         mark_failed: bool = False, now: Clock = utc_now) -> Preview:
    """`complete-job`: refuses a job with no output (or, with `mark_failed`, a job that is not failed)."""
    diagnosis = diagnose_ids(backends, [job_id], rules)[0]
    if mark_failed:
        if diagnosis.state != State.FAILED or Action.MARK_FAILED not in {s.action for s in diagnosis.plan}:
            raise RefusedError(
                f"job {job_id} is {diagnosis.state.value} with status '{diagnosis.status}'; "
                "--mark-failed only records a queued/processing job that never produced output"
            )
        options = RepairOptions(rules=rules, states=frozenset({State.FAILED}),
                                actions=frozenset({Action.MARK_FAILED}), now=now)
        return Preview(planned(diagnosis, options), options)
    if diagnosis.state in NO_OUTPUT_STATES:
        raise RefusedError(
            f"job {job_id} has no output to complete ({diagnosis.state.value}: {', '.join(diagnosis.codes)})",
            hint="--mark-failed records a job that never produced output as failed" if diagnosis.state == State.FAILED else None,
        )
    actions = SAVE_ACTIONS if save else frozenset({Action.COMPLETE_JOB})
    options = RepairOptions(rules=rules, states=frozenset({State.REPAIRABLE, State.NEEDS_REVIEW}),
                            actions=actions, now=now)
    return Preview(planned(diagnosis, options), options)


def preview_link(backends: Backends, job_id: UUID, character_id: UUID, *, rules: Rules, save: bool = True,
                 now: Clock = utc_now) -> Preview:
    """`link-character`: only a character of the job's own user, never in place of one the job names."""
    actions = SAVE_ACTIONS if save else frozenset({Action.LINK_CHARACTER})
    options = RepairOptions(rules=rules, actions=actions, character_id=character_id, now=now)
    return Preview(checked_preview(backends, job_id, options), options)


def preview_repair(backends: Backends, job_id: UUID, *, rules: Rules, now: Clock = utc_now) -> Preview:
    """`repair`'s "apply the plan": a repairable job's whole plan; the job's own trouble is in the result."""
    options = RepairOptions(rules=rules, now=now)
    return Preview(preview_job(backends, job_id, options), options)


def complete_job(
    backends: Backends, job_id: UUID, *, rules: Rules, save: bool = True, mark_failed: bool = False,
    dry_run: bool = False, audit: Audit = None, now: Clock = utc_now,
) -> JobResult:
    preview = preview_complete_job(backends, job_id, rules=rules, save=save, mark_failed=mark_failed, now=now)
    return preview.result if dry_run else apply(backends, preview, audit)


def link_character(
    backends: Backends, job_id: UUID, character_id: UUID, *, rules: Rules, save: bool = True,
    dry_run: bool = False, audit: Audit = None, now: Clock = utc_now,
) -> JobResult:
    preview = preview_link(backends, job_id, character_id, rules=rules, save=save, now=now)
    return preview.result if dry_run else apply(backends, preview, audit)


def backfill(
    backends: Backends, selection: Selection, *, max_jobs: int | None = None, concurrency: int = 1,
    dry_run: bool = False, audit: Audit = None, open_worker: Callable[[], Backends] | None = None,
    progress: Progress = None, page_size: int = BACKFILL_PAGE,
    stop: threading.Event | None = None, now: Clock = utc_now,
) -> BackfillReport:
    """Repair every repairable job of the selection; other states are counted, never touched.
    Over Postgres a page of jobs is repaired in one transaction (repair_pages); over REST, job by job.
    Once `stop` is set (a signal), no new page or job starts; the report counts what was left."""
    report = BackfillReport()
    stop = stop or threading.Event()
    options = RepairOptions(rules=selection.rules, dry_run=dry_run, now=now)
    work = list(_repairable(backends, selection, report, max_jobs, stop))
    lanes = concurrency if open_worker is not None and len(work) > 1 else 1
    if pages_supported(backends):
        _in_pages(backends, work, options, audit, lanes, open_worker, report, progress, page_size, stop)
    elif lanes <= 1 or open_worker is None:
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


def _in_pages(backends: Backends, work: list[tuple[UUID, UUID]], options: RepairOptions, audit: Audit,
              lanes: int, open_worker: Callable[[], Backends] | None, report: BackfillReport, progress: Progress,
              page_size: int, stop: threading.Event) -> None:
    """Each lane repairs its pages in turn, on its own connection. A user's jobs all go to one lane:
    a repair writes only rows of the job's user, so two lanes never wait for each other's row locks."""
    by_lane: list[list[UUID]] = [[] for _ in range(lanes)]
    for job_id, user_id in work:
        by_lane[user_id.int % lanes].append(job_id)
    if lanes == 1 or open_worker is None:
        for result in _lane(backends, by_lane[0], options, audit, page_size, stop):
            _add(report, result, progress)
        return
    _parallel_lanes([lane for lane in by_lane if lane], options, audit, open_worker, report, progress, page_size, stop)


def _lane(backends: Backends, jobs: list[UUID], options: RepairOptions, audit: Audit, page_size: int,
          stop: threading.Event) -> Iterator[JobResult]:
    """Pages of `page_size` jobs, in order; a job handed back by its page leads the next one."""
    waiting = list(jobs)
    while waiting and not stop.is_set():
        page, waiting = waiting[:page_size], waiting[page_size:]
        done = repair_page(backends, page, options, audit)
        waiting = done.deferred + waiting
        yield from done.results


def _parallel_lanes(lanes: list[list[UUID]], options: RepairOptions, audit: Audit,
                    open_worker: Callable[[], Backends], report: BackfillReport, progress: Progress, page_size: int,
                    stop: threading.Event) -> None:
    """One thread per lane; results come back to this thread as each page finishes. A signal, or the
    first error that stops a run (audit log, lost connection), stops the lanes after their current page."""
    results: queue.SimpleQueue[JobResult | None] = queue.SimpleQueue()

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


def _parallel(work: list[UUID], options: RepairOptions, audit: Audit, concurrency: int,
              open_worker: Callable[[], Backends], report: BackfillReport, progress: Progress, stop: threading.Event) -> None:
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


def _add(report: BackfillReport, result: JobResult, progress: Progress) -> None:
    report.attempted += 1
    report.add(result)
    if progress is not None:
        progress(result)

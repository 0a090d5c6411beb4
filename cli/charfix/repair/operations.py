"""The repair commands as library calls: what `complete-job`, `link-character`, `repair` and
`backfill-portraits` do, without any printing.

A one-job command is a checked preview, then its application: the preview reads the job once,
diagnoses it, checks the request against the rules (no output to complete, another user's
character, a job that already names a character) and plans; `apply` takes the job's lock, reads it
again and writes what is still missing (repair/job.py). So a confirmed write reads the job twice."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol
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

    The repairs go on while the scan does: over Postgres a page of `page_size` jobs is repaired in one
    transaction (repair_page) as soon as that many are found, and what a page of the scan found is
    repaired (or handed to the lanes) before the scan reads its next page; over REST, job by job as
    they are found. Once `stop` is set (a signal, or an error that stopped a lane), no new page or job
    starts and the scan ends with the page it has read; the report counts what was left.

    A later page of the scan reads rows that repairs of earlier pages wrote (a character's image, a
    library row): it sees what any later run would see. What the scan found is only a list of jobs to
    try: a repair locks each job, reads its facts again and diagnoses it again before it writes
    (docs/repairs.md, "The shape of a repair" steps 1-2 and "backfill-portraits over Postgres: a page
    at a time"), so no write rests on facts the scan read before a repair changed them."""
    report = BackfillReport()
    stop = stop or threading.Event()
    run = _Run(RepairOptions(rules=selection.rules, dry_run=dry_run, now=now), audit, report, progress,
               page_size, stop)
    lanes = concurrency if open_worker is not None else 1
    repairs: _Repairs
    if pages_supported(backends):
        repairs = _PageLanes(run, lanes, open_worker) if open_worker is not None and lanes > 1 else _OneLane(run, backends)
    else:
        repairs = _JobWorkers(run, lanes, open_worker) if open_worker is not None and lanes > 1 else _JobByJob(run, backends)
    found = 0
    try:
        for job_id, user_id in _repairable(backends, selection, report, max_jobs, stop, repairs.scan_paused):
            found += 1
            repairs.add(job_id, user_id)
    except BaseException:
        stop.set()  # the scan failed (or Ctrl-C without a handler): no new page; the lanes finish theirs
        repairs.finish()
        raise
    repairs.finish()
    report.not_attempted = found - report.attempted
    return report


def _repairable(backends: Backends, selection: Selection, report: BackfillReport, max_jobs: int | None,
                stop: threading.Event, scan_paused: Callable[[], None]) -> Iterator[tuple[UUID, UUID]]:
    """The repairable jobs, as the scan finds them. Between two pages of the scan, `scan_paused` runs
    (no read of the scan is in flight then); after a stop, the scan reads no further page."""
    tally = Tally()
    attempted = 0

    def between_pages() -> bool:
        scan_paused()
        if stop.is_set():
            report.scan_stopped = True
            return False
        return True

    for diagnosis in selected(backends, selection, tally, between_pages=between_pages):
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


@dataclass(frozen=True)
class _Run:
    """What every way of repairing below shares: how to repair, where results go, when to stop."""

    options: RepairOptions
    audit: Audit
    report: BackfillReport
    progress: Progress
    page_size: int
    stop: threading.Event

    def done(self, result: JobResult) -> None:
        """Only ever called on the thread that runs the scan (the report and progress are its own)."""
        self.report.attempted += 1
        self.report.add(result)
        if self.progress is not None:
            self.progress(result)

    def next_page(self, backends: Backends, waiting: list[UUID]) -> tuple[list[JobResult], list[UUID]]:
        """Repair the first `page_size` waiting jobs; returns their results and the jobs still waiting,
        led by those the page handed back (to be locked and read again after it committed)."""
        page = repair_page(backends, waiting[:self.page_size], self.options, self.audit)
        return page.results, page.deferred + waiting[self.page_size:]


class _Repairs(Protocol):
    def add(self, job_id: UUID, user_id: UUID) -> None:
        """A repairable job the scan found."""

    def scan_paused(self) -> None:
        """The scan has diagnosed a page and is about to read the next."""

    def finish(self) -> None:
        """The scan is over (or failed): repair what is waiting, unless stopped, and wait for it."""


class _OneLane:
    """Over Postgres on the scan's own connection: the scan and the repairs take turns. A page starts
    as soon as `page_size` jobs are found, and what a page of the scan found is repaired before the
    next is read. repair_page's transaction has ended when it returns, so no read of the scan ever
    runs inside a repair's transaction."""

    def __init__(self, run: _Run, backends: Backends):
        self.run, self.backends = run, backends
        self.waiting: list[UUID] = []

    def add(self, job_id: UUID, user_id: UUID) -> None:
        self.waiting.append(job_id)
        self._repair(at_least=self.run.page_size)

    def scan_paused(self) -> None:
        self._repair(at_least=1)

    def finish(self) -> None:
        self._repair(at_least=1)

    def _repair(self, at_least: int) -> None:
        while len(self.waiting) >= at_least and not self.run.stop.is_set():
            results, self.waiting = self.run.next_page(self.backends, self.waiting)
            for result in results:
                self.run.done(result)


class _Inbox:
    """The jobs handed to one lane and not yet taken, and whether the scan will hand it more."""

    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.jobs: list[UUID] = []
        self.closed = False

    def hand(self, jobs: list[UUID]) -> None:
        with self.ready:
            self.jobs += jobs
            self.ready.notify()

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()

    def take(self, *, wait: bool) -> list[UUID] | None:
        """Every job handed so far (waiting for one if asked); None once the scan is over and all are taken."""
        with self.ready:
            while wait and not self.jobs and not self.closed:
                self.ready.wait()
            jobs, self.jobs = self.jobs, []
            return None if not jobs and self.closed else jobs


class _PageLanes:
    """--concurrency N over Postgres: N lanes, each a thread with its own connection (opened when its
    first jobs arrive), fed while the scan goes on. A user's jobs all go to one lane: a repair writes
    only rows of the job's user, so two lanes never wait for each other's row locks. A lane is handed
    its jobs when `page_size` of them are found and at the end of each page of the scan; it repairs
    what it was handed, a page at a time. Results come back to the scan's thread as each page
    finishes. A signal, or the first error that stops a run (audit log, lost connection), stops the
    lanes after their current page."""

    def __init__(self, run: _Run, lanes: int, open_worker: Callable[[], Backends]):
        self.run, self.open_worker = run, open_worker
        self.inboxes = [_Inbox() for _ in range(lanes)]
        self.found: list[list[UUID]] = [[] for _ in range(lanes)]  # not yet handed to the lane
        self.results: queue.SimpleQueue[JobResult | None] = queue.SimpleQueue()  # None: a lane ended
        self.pool = ThreadPoolExecutor(max_workers=lanes)
        self.lanes: dict[int, Future[None]] = {}  # started when first handed jobs
        self.ended = 0

    def add(self, job_id: UUID, user_id: UUID) -> None:
        lane = user_id.int % len(self.inboxes)
        self.found[lane].append(job_id)
        if len(self.found[lane]) >= self.run.page_size:
            self._hand(lane)
        self._collect()

    def scan_paused(self) -> None:
        for lane in range(len(self.inboxes)):
            self._hand(lane)
        self._collect()

    def finish(self) -> None:
        try:
            self.scan_paused()
            self._close()
            while self.ended < len(self.lanes):
                self._receive(self.results.get())
        except BaseException:
            self.run.stop.set()  # Ctrl-C here: the lanes stop after their current page
            raise
        finally:
            self._close()
            self.pool.shutdown(wait=True)
        for lane in self.lanes.values():
            lane.result()  # re-raise the error that stopped a lane

    def _hand(self, lane: int) -> None:
        if not self.found[lane]:
            return
        if lane not in self.lanes:
            self.lanes[lane] = self.pool.submit(self._lane, self.inboxes[lane])
        self.inboxes[lane].hand(self.found[lane])
        self.found[lane] = []

    def _collect(self) -> None:
        """The results the lanes sent back so far, without waiting."""
        while True:
            try:
                self._receive(self.results.get_nowait())
            except queue.Empty:
                return

    def _receive(self, result: JobResult | None) -> None:
        if result is None:
            self.ended += 1
        else:
            self.run.done(result)

    def _close(self) -> None:
        for inbox in self.inboxes:
            inbox.close()

    def _lane(self, inbox: _Inbox) -> None:
        try:
            if self.run.stop.is_set():
                return
            backends = self.open_worker()
            try:
                waiting: list[UUID] = []
                while not self.run.stop.is_set():
                    handed = inbox.take(wait=not waiting)
                    if handed is None and not waiting:
                        return  # the scan is over and every job handed to this lane is done
                    waiting += handed or []
                    results, waiting = self.run.next_page(backends, waiting)
                    for result in results:
                        self.results.put(result)
            finally:
                backends.repository.close()
        except BaseException:
            self.run.stop.set()
            raise
        finally:
            self.results.put(None)


class _JobByJob:
    """Over REST, one client: each job is repaired as soon as the scan finds it."""

    def __init__(self, run: _Run, backends: Backends):
        self.run, self.backends = run, backends

    def add(self, job_id: UUID, user_id: UUID) -> None:
        if not self.run.stop.is_set():
            self.run.done(repair_job(self.backends, job_id, self.run.options, self.run.audit))

    def scan_paused(self) -> None:
        pass

    def finish(self) -> None:
        pass


class _JobWorkers:
    """Over REST with --concurrency N: N worker threads, each with its own client and storage client,
    start on the jobs as the scan finds them. Results come back in the order the jobs were found.
    Once `stop` is set (a signal, or an error in a worker), the workers start no new job."""

    def __init__(self, run: _Run, workers: int, open_worker: Callable[[], Backends]):
        self.run, self.open_worker = run, open_worker
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.pending: deque[Future[JobResult | None]] = deque()
        self.local = threading.local()
        self.opened: list[Backends] = []
        self.guard = threading.Lock()

    def add(self, job_id: UUID, user_id: UUID) -> None:
        self.pending.append(self.pool.submit(self._repair, job_id))
        self.scan_paused()

    def scan_paused(self) -> None:
        while self.pending and self.pending[0].done():
            self._take(self.pending.popleft())

    def finish(self) -> None:
        try:
            while self.pending:
                self._take(self.pending.popleft())
        except BaseException:
            self.run.stop.set()
            raise
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            for backends in self.opened:
                backends.repository.close()

    def _take(self, future: Future[JobResult | None]) -> None:
        result = future.result()  # re-raises the error that stopped a worker
        if result is not None:
            self.run.done(result)

    def _repair(self, job_id: UUID) -> JobResult | None:
        if self.run.stop.is_set():
            return None
        try:
            if not hasattr(self.local, "backends"):
                self.local.backends = self.open_worker()
                with self.guard:
                    self.opened.append(self.local.backends)
            return repair_job(self.local.backends, job_id, self.run.options, self.run.audit)
        except BaseException:
            self.run.stop.set()
            raise

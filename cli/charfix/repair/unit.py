"""The unit of work of a repair: the one place its writes pass through (docs/repairs.md, "The unit of
work"). It owns the job's (or the page's) row locks, the transaction and the savepoints, and tells the
recorders of the writes (the audit log, and any other record kept of them) what happened, in order:

- a write that lands the moment it is made (an object; any row over REST) is announced before it is
  made and closed after, as made or not;
- a row write inside a transaction is recorded as pending; just before the commit the recorders flush
  (still inside the transaction: if they cannot, the row writes roll back), then learn of the commit
  or the rollback.

The one-job path (`job.py`) and the page path (`page.py`) are strategies over it: they choose what to
lock and what to write; the choreography of locks, transactions and records is here, once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, UTC
from typing import Any, Protocol, TypeVar
from uuid import UUID

from charfix.backends import Backends
from charfix.errors import CharfixError, ConnectionLostError
from charfix.models import OBJECT_WRITES, Action, Job, UndoAction
from charfix.audit.log import AuditError, AuditLog, Intent
from charfix.repository.base import PageWriter, Writer

T = TypeVar("T")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Write:
    """One write a repair makes: what it is for, where, and the value before and as planned."""

    job_id: UUID
    step: Action | UndoAction
    target: str  # `table/id` or `bucket/key`
    before: Any  # plain JSON values (models dumped)
    planned: Any
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Recorder(Protocol):
    """What the unit tells a record of its writes. A method that cannot record raises AuditError:
    the unit then rolls back what it can and the run stops."""

    def announce(self, write: Write) -> None:
        """Before a write that lands at once is made: it must be on record (synced) first."""

    def made(self, write: Write, *, after: Any) -> None:
        """The announced write was made."""

    def not_made(self, write: Write, *, error: str) -> None:
        """The announced write failed."""

    def pending(self, write: Write, *, after: Any) -> None:
        """A row write inside the open transaction: it lands with the commit, or never."""

    def job_rolled_back(self, job_id: UUID) -> None:
        """One job's savepoint rolled back: its pending writes will not land."""

    def before_commit(self, transaction_id: Callable[[], int | None], repository: Any = None) -> None:
        """Inside the transaction, just before it commits: make the pending writes durable. `repository`
        holds the transaction: a record kept in the database is written through it, so that it commits
        with the writes (audit/database.py)."""

    def committed(self) -> None:
        """The transaction committed."""

    def rolled_back(self, *, known: bool) -> None:
        """The transaction rolled back (`known=False`: the connection broke, maybe during the commit)."""


class AuditLogRecorder:
    """The audit log (audit/log.py) as a recorder."""

    def __init__(self, log: AuditLog):
        self.log = log
        self._intents: dict[str, Intent] = {}  # one unit's announced writes (one thread)

    def announce(self, write: Write) -> None:
        self._intents[write.id] = self.log.intent(job_id=write.job_id, step=write.step.value, target=write.target,
                                                  before=write.before, after=write.planned)

    def made(self, write: Write, *, after: Any) -> None:
        self.log.done(self._intents.pop(write.id), after=after)

    def not_made(self, write: Write, *, error: str) -> None:
        self.log.not_done(self._intents.pop(write.id), error=error)

    def pending(self, write: Write, *, after: Any) -> None:
        self.log.record(job_id=write.job_id, step=write.step.value, target=write.target, before=write.before,
                        after=after)

    def job_rolled_back(self, job_id: UUID) -> None:
        self.log.drop(job_id)  # its object copies keep their lines

    def before_commit(self, transaction_id: Callable[[], int | None], repository: Any = None) -> None:
        self.log.flush(transaction_id)

    def committed(self) -> None:
        self.log.committed()

    def rolled_back(self, *, known: bool) -> None:
        self.log.rolled_back(known=known)


def recorders_for(audit: AuditLog | Recorder | Sequence[Recorder] | None) -> tuple[Recorder, ...]:
    """What the repair functions accept as `audit`: nothing, the audit log, a recorder, or several."""
    if audit is None:
        return ()
    if isinstance(audit, AuditLog):
        return (AuditLogRecorder(audit),)
    if isinstance(audit, Sequence):
        return tuple(r for item in audit for r in recorders_for(item))
    return (audit,)


class Unit:
    """The unit of work of one job (`job`) or of a page of jobs (`page`, with a `savepoint` per job).
    One unit per thread: its records of announced writes are its own."""

    def __init__(self, backends: Backends, audit: AuditLog | Recorder | Sequence[Recorder] | None = None, *,
                 now: Clock = utc_now):
        self.backends = backends
        self.recorders = recorders_for(audit)
        self.now = now  # the time the repairs write (failed-at); injected, as the rules' clock is

    @property
    def writer(self) -> Writer:
        return self.backends.repository

    @property
    def page_writer(self) -> PageWriter:
        pages = self.backends.repository.pages()
        if pages is None:  # page.pages_supported() decides before a page unit is made
            raise TypeError("this backend writes no pages (repository.pages() is None)")
        return pages

    # -- the transaction ---------------------------------------------------------------------------

    @contextmanager
    def job(self, job_id: UUID) -> Iterator[bool]:
        """The job's row lock and its transaction (REST: neither; every write lands on its own). Yields
        False, without waiting, when another run holds the job. Leaving the block normally flushes the
        records and commits; an error rolls back and propagates."""
        with self._settled("the job's writes were rolled back" if self.writer.transactional
                           else "no further write was made"):
            with self.writer.locked(job_id) as got:
                yield got
                self._before_commit()

    @contextmanager
    def page(self, job_ids: Sequence[UUID]) -> Iterator[list[Job]]:
        """One transaction for a page of jobs: yields the jobs (as stored) whose row locks it took."""
        with self._settled(f"the row writes of this page of {len(job_ids)} job(s) were rolled back"):
            with self.page_writer.locked_jobs(job_ids) as jobs:
                yield jobs
                self._before_commit()

    @contextmanager
    def savepoint(self, job_id: UUID) -> Iterator[None]:
        """Inside `page`: an error rolls back this job's row writes only, and they leave the record."""
        try:
            with self.page_writer.savepoint():
                yield
        except (AuditError, ConnectionLostError):
            raise  # the page's, not the job's: `page` settles them
        except CharfixError:
            self._tell(lambda r: r.job_rolled_back(job_id))
            raise

    @contextmanager
    def _settled(self, rolled_back: str) -> Iterator[None]:
        try:
            yield
        except AuditError as exc:
            # The record cannot be written: nothing is told to it, and the run stops.
            raise exc.rolled_back(rolled_back) from exc
        except ConnectionLostError:
            self._tell(lambda r: r.rolled_back(known=False))
            raise
        except CharfixError:
            self._tell(lambda r: r.rolled_back(known=True))
            raise
        self._tell(lambda r: r.committed())

    def _before_commit(self) -> None:
        # Inside the transaction: if the records cannot be written, the row writes roll back.
        transaction_id = self.backends.repository.transaction_id
        self._tell(lambda r: r.before_commit(transaction_id, repository=self.backends.repository))

    def _tell(self, call: Callable[[Recorder], None]) -> None:
        for recorder in self.recorders:
            call(recorder)

    # -- the writes ----------------------------------------------------------------------------------

    def write(self, write: Write, make: Callable[[], T], view: Callable[[T], Any] = lambda value: value) -> T:
        """Make one write and record it. A write that lands at once (an object; any write over REST) is
        announced before it is made and closed after; a row write inside a transaction is recorded as
        pending, for the commit to settle."""
        if not self.recorders:
            return make()
        if write.step.value in OBJECT_WRITES or not self.writer.transactional:
            self._tell(lambda r: r.announce(write))
            try:
                made = make()
            except (CharfixError, OSError) as exc:
                error = exc.message if isinstance(exc, CharfixError) else str(exc)
                self._tell(lambda r: r.not_made(write, error=error))
                raise
            after = _plain(view(made))
            self._tell(lambda r: r.made(write, after=after))
            return made
        made = make()
        after = _plain(view(made))
        self._tell(lambda r: r.pending(write, after=after))
        return made


def _plain(value: Any) -> Any:
    """A model as JSON values; anything else as it is."""
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value

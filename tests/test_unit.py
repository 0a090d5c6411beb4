"""The unit of work (repair/unit.py): every write of a repair reaches every recorder, in order, and a
recorder that cannot record rolls the row writes back. A recorder here is a test's spy beside the
real audit log, as a second record (a database audit trail) would sit beside it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from charfix.backends import Backends
from charfix.diagnosis import Rules
from charfix.models import Outcome
from charfix.audit.log import AuditError, AuditLog
from charfix.repair.job import RepairOptions, repair_job
from charfix.repair.operations import backfill
from charfix.repair.unit import Write
from charfix.repository.base import JobQuery
from charfix.queries.selection import Selection
from charfix.repository.postgres import PostgresRepository
from charfix.storage.local import LocalStorage
from snapshots import snapshot


class Spy:
    """A recorder that remembers what it was told; `fail_on` makes that call raise as a full disk would."""

    def __init__(self, fail_on: str | None = None):
        self.events: list[tuple[str, Any]] = []
        self.fail_on = fail_on

    def _seen(self, event: str, detail: Any = None) -> None:
        if event == self.fail_on:
            raise AuditError("cannot write the spy's record: No space left on device")
        self.events.append((event, detail))

    def announce(self, write: Write) -> None:
        self._seen("announce", write.step.value)

    def made(self, write: Write, *, after: Any) -> None:
        self._seen("made", write.step.value)

    def not_made(self, write: Write, *, error: str) -> None:
        self._seen("not_made", write.step.value)

    def pending(self, write: Write, *, after: Any) -> None:
        self._seen("pending", write.step.value)

    def job_rolled_back(self, job_id: UUID) -> None:
        self._seen("job_rolled_back", job_id)

    def before_commit(self, transaction_id, repository=None) -> None:
        self._seen("before_commit", transaction_id())

    def committed(self) -> None:
        self._seen("committed")

    def rolled_back(self, *, known: bool) -> None:
        self._seen("rolled_back", known)


@pytest.fixture
def backends(seeded):
    repo = PostgresRepository.connect(seeded.db_url)
    yield Backends(repository=repo, storage=LocalStorage(seeded.storage))
    repo.close()


def test_every_write_reaches_every_recorder_in_order_inside_the_transaction(seeded, backends, tmp_path):
    spy = Spy()
    log = AuditLog(tmp_path / "audit.jsonl", "tester", "test").open()
    result = repair_job(backends, seeded.case("incident").job_id, RepairOptions(rules=Rules(now=seeded.now)),
                        [log, spy])
    assert result.outcome == Outcome.REPAIRED
    assert [event for event, _ in spy.events] == [
        "pending", "pending", "announce", "made", "pending", "pending", "before_commit", "committed"]
    assert [detail for event, detail in spy.events if event in ("pending", "announce")] == [
        "complete_job", "link_character", "copy_object", "insert_library_row", "update_character_image"]
    xid = dict(spy.events)["before_commit"]
    assert isinstance(xid, int)  # asked inside the job's transaction, before it committed
    assert log.written == 5  # the audit log, told the same writes beside the spy


def test_a_recorder_that_cannot_record_before_the_commit_rolls_the_row_writes_back(seeded, backends):
    job = seeded.case("row_failed").job_id  # row writes only: nothing lands outside the transaction
    before = snapshot(seeded.db_url, seeded.storage)
    with pytest.raises(AuditError, match="No space left on device; the job's writes were rolled back"):
        repair_job(backends, job, RepairOptions(rules=Rules(now=seeded.now)), Spy(fail_on="before_commit"))
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_a_page_tells_its_recorders_once_and_a_failed_job_leaves_them(seeded, backends):
    """A backfill page: one flush and one commit for the page; a job whose savepoint rolled back is
    dropped from the record (its object copies keep theirs)."""
    copy_failed = seeded.case("copy_failed")
    user = next(j["user_id"] for j in seeded.sample.jobs if j["id"] == copy_failed.job_id)
    dax = next(c["id"] for c in seeded.sample.characters if c["name"] == "Dax")
    # A folder where the copy must go: that job's copy fails, the others go on (test_exit_codes.py).
    (seeded.storage / "user-library" / str(user) / f"{copy_failed.job_id}_{dax}.png").mkdir(parents=True)
    spy = Spy()
    selection = Selection(query=JobQuery(since=seeded.now - timedelta(days=365)), rules=Rules(now=seeded.now))
    report = backfill(backends, selection, audit=spy)
    assert [r.job_id for r in report.failed] == [copy_failed.job_id] and report.repaired
    events = [event for event, _ in spy.events]
    assert events.count("before_commit") == events.count("committed") == 1
    assert ("job_rolled_back", copy_failed.job_id) in spy.events
    assert ("not_made", "copy_object") in spy.events
    assert events[-2:] == ["before_commit", "committed"]


@pytest.mark.parametrize(("case", "choice", "steps"), [
    ("incident", "apply", ["complete_job", "link_character", "copy_object", "insert_library_row",
                           "update_character_image"]),
    ("ambiguous", "complete", ["complete_job"]),
    ("no_output", "mark", ["mark_failed"]),
    ("ambiguous", "choose", ["complete_job", "link_character", "copy_object", "insert_library_row",
                             "update_character_image"]),
])
def test_each_interactive_choice_runs_its_operation_as_a_library_call(seeded, backends, tmp_path, case, choice, steps):
    """repair/choices.py: what `repair` runs for a person's choice, without a terminal."""
    from charfix.queries.scan import diagnose_ids
    from charfix.repair.choices import preview_choice
    from charfix.repair.operations import apply

    rules = Rules(now=seeded.now)
    diagnosis = diagnose_ids(backends, [seeded.case(case).job_id], rules)[0]
    luna = [c for c in seeded.sample.characters if c["name"] == "Luna"][1]["id"] if choice == "choose" else None
    preview = preview_choice(backends, diagnosis, choice, rules=rules, character_id=luna)
    assert preview.result.outcome == Outcome.PLANNED
    assert [s.action.value for s in preview.result.steps] == steps
    result = apply(backends, preview, AuditLog(tmp_path / "audit.jsonl", "tester", "test").open())
    assert result.outcome == Outcome.REPAIRED and [s.action.value for s in result.steps] == steps


def test_choosing_another_users_character_is_refused_before_anything_is_written(seeded, backends):
    from charfix.demo.sample import MALLORY
    from charfix.errors import RefusedError
    from charfix.queries.scan import diagnose_ids
    from charfix.repair.choices import preview_choice

    rules = Rules(now=seeded.now)
    diagnosis = diagnose_ids(backends, [seeded.case("ambiguous").job_id], rules)[0]
    theirs = next(c["id"] for c in seeded.sample.characters if c["user_id"] == MALLORY)
    before = snapshot(seeded.db_url, seeded.storage)
    with pytest.raises(RefusedError, match="another user"):
        preview_choice(backends, diagnosis, "choose", rules=rules, character_id=theirs)
    assert snapshot(seeded.db_url, seeded.storage) == before

"""`backfill-portraits` over Postgres repairs a page of jobs in one transaction, each job in its own
savepoint: what a page guarantees beyond what one job does (test_reliability.py has the rest)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.audit import log as audit
from charfix.audit.log import AuditError, AuditLog
from charfix.demo.cases import png
from charfix.errors import BackendError, ConnectionLostError
from charfix.repair.page import LOCKED_ELSEWHERE
from charfix.repair.operations import backfill
from charfix.storage.local import LocalStorage
from snapshots import duplicate_rows
from test_reliability import dropping_on_second_insert, open_backends, repairable_left, repairable_total, selection


def log_lines(path) -> list[dict]:
    """The writes the log records as made (docs/repairs.md: done lines, and committed pending lines)."""
    return audit.writes(audit.read(path)) if path.exists() else []


class FailingFor(LocalStorage):
    """Local storage whose copies for one job fail, as a storage outage would."""

    def __init__(self, root, job_id):
        super().__init__(root)
        self.job_id = str(job_id)

    def copy(self, source_bucket, source_key, bucket, key):
        if self.job_id in key:
            raise BackendError("storage answered 503 on copy")
        return super().copy(source_bucket, source_key, bucket, key)


def test_a_failing_job_inside_a_page_does_not_roll_back_its_neighbours(seeded, tmp_path):
    # The incident's plan completes the job and links the character before it copies: the copy
    # fails, so those two row writes must roll back with the job's savepoint, and only them.
    incident = seeded.case("incident").job_id
    with seeded.connect() as conn:
        before = conn.execute("select status, metadata from jobs where id = %s", (incident,)).fetchone()
    audit = AuditLog(tmp_path / "audit.jsonl", "t", "test").open()
    report = backfill(open_backends(seeded, FailingFor(seeded.storage, incident)), selection(seeded), audit=audit)
    assert [r.job_id for r in report.failed] == [incident] and "503" in report.failed[0].message
    assert len(report.repaired) == repairable_total(seeded) - 1  # one page: the neighbours on both sides
    with seeded.connect() as conn:
        assert conn.execute("select status, metadata from jobs where id = %s", (incident,)).fetchone() == before
    lines = log_lines(tmp_path / "audit.jsonl")
    assert not [line for line in lines if line["job_id"] == str(incident)]
    assert {line["job_id"] for line in lines} == {str(r.job_id) for r in report.repaired}
    assert repairable_left(seeded) == 1
    rerun = backfill(open_backends(seeded), selection(seeded))
    assert [r.job_id for r in rerun.repaired] == [incident] and not rerun.failed
    assert len(duplicate_rows(seeded.db_url)) == 1  # only the demo's own duplicates case


def test_a_job_another_run_holds_is_skipped_and_only_that_job(seeded):
    held = seeded.case("copy_failed").job_id
    with psycopg.connect(seeded.db_url) as other_run:
        other_run.execute("select id from jobs where id = %s for update", (held,))
        report = backfill(open_backends(seeded), selection(seeded))
        assert [(r.job_id, r.message) for r in report.skipped_other] == [(held, LOCKED_ELSEWHERE)]
        assert len(report.repaired) == repairable_total(seeded) - 1 and not report.failed
    rerun = backfill(open_backends(seeded), selection(seeded))
    assert [r.job_id for r in rerun.repaired] == [held]


def test_an_unwritable_audit_log_rolls_back_the_whole_page_and_stops(seeded, tmp_path, monkeypatch):
    original = AuditLog._append

    def full_disk_for_row_lines(self, lines, **kwargs):
        if any(line["phase"] == "pending" for line in lines):  # the page's row lines, before its commit
            raise AuditError(f"cannot write the audit log {self.path}: No space left on device")
        return original(self, lines, **kwargs)

    monkeypatch.setattr(AuditLog, "_append", full_disk_for_row_lines)
    audit = AuditLog(tmp_path / "audit.jsonl", "t", "test").open()
    with pytest.raises(AuditError, match="No space left on device; the row writes of this page of 8 job"):
        backfill(open_backends(seeded), selection(seeded), audit=audit)
    monkeypatch.setattr(AuditLog, "_append", original)
    lines = log_lines(tmp_path / "audit.jsonl")
    assert lines and {line["step"] for line in lines} == {"copy_object"}  # the copies did happen
    assert repairable_left(seeded) == repairable_total(seeded)  # and no row write did
    rerun = backfill(open_backends(seeded), selection(seeded))
    assert len(rerun.repaired) == repairable_total(seeded) and not rerun.failed
    assert len(duplicate_rows(seeded.db_url)) == 1


def test_a_lost_connection_rolls_back_the_page_and_stops(seeded, tmp_path):
    backends = dropping_on_second_insert(seeded)
    audit = AuditLog(tmp_path / "audit.jsonl", "t", "test").open()
    with pytest.raises(ConnectionLostError, match="connection was lost"):
        backfill(backends, selection(seeded), audit=audit)
    lines = log_lines(tmp_path / "audit.jsonl")
    assert {line["step"] for line in lines} == {"copy_object"}  # the first insert rolled back with the page
    assert repairable_left(seeded) == repairable_total(seeded)
    rerun = backfill(open_backends(seeded), selection(seeded))
    assert len(rerun.repaired) == repairable_total(seeded) and not rerun.failed
    assert len(duplicate_rows(seeded.db_url)) == 1


def _two_jobs_for_one_character(seeded) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """Two stuck jobs naming one character by id, which has no image yet: both may set it."""
    user, character = uuid.uuid4(), uuid.uuid4()
    first, second = uuid.uuid4(), uuid.uuid4()
    with seeded.connect() as conn:
        conn.execute("insert into characters (id, user_id, name, description, created_at) values (%s, %s, 'Shared', 'd', %s)",
                     (character, user, seeded.now - timedelta(days=2)))
        for n, job in enumerate((first, second)):
            created = seeded.now - timedelta(hours=3, minutes=-n)
            key = f"{user}/{job}_{n}.png"
            conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values "
                         "(%s, %s, 'image', 'processing', %s, %s)",
                         (job, user, Jsonb({"destination": "character_portrait", "character_id": str(character)}), created))
            conn.execute("insert into workspace_assets (user_id, job_id, asset_type, temp_storage_path, file_size_bytes, "
                         "mime_type, generation_seed, original_prompt, model_used, created_at) values "
                         "(%s, %s, 'image', %s, 70, 'image/png', 42, 'p', 'm', %s)", (user, job, key, created + timedelta(seconds=5)))
            path = seeded.storage / "workspace-temp" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png((n, 20, 20)))
    return first, second, character


@pytest.mark.parametrize("page_size", [1, 100])
def test_a_job_sharing_a_character_with_an_earlier_one_is_read_again_after_it(seeded, tmp_path, page_size):
    # Job by job, the second job reads the character after the first set its image, and keeps that image.
    # In one page, it must not act on facts read before the first job's write: it goes to the next page.
    first, second, character = _two_jobs_for_one_character(seeded)
    audit = AuditLog(tmp_path / "audit.jsonl", "t", "test").open()
    report = backfill(open_backends(seeded), selection(seeded), audit=audit, page_size=page_size)
    assert not report.failed and {first, second} <= {r.job_id for r in report.repaired}
    with seeded.connect() as conn:
        image, = conn.execute("select image_url from characters where id = %s", (character,)).fetchone()
        statuses = conn.execute("select status from jobs where id = any(%s)", ([first, second],)).fetchall()
    assert image.startswith("user-library/") and str(first) in image
    assert statuses == [("completed",), ("completed",)]
    updates = [line for line in log_lines(tmp_path / "audit.jsonl") if line["step"] == "update_character_image"
               and line["target"] == f"characters/{character}"]
    assert [line["job_id"] for line in updates] == [str(first)]
    assert repairable_left(seeded) == 0 and len(duplicate_rows(seeded.db_url)) == 1


def test_a_job_changed_by_someone_else_inside_a_page_is_diagnosed_again_and_its_neighbours_repaired(
        seeded, monkeypatch):
    # The page locks the characters it will write before its first write (writes.lock_characters), so
    # someone else's change lands either before that lock, or waits for the page to commit. Before:
    # the job is handed back, read and diagnosed again in a later page, and the user's choice stays.
    from charfix.repair import page as repair_pages

    changed = seeded.case("character_not_updated").job_id
    original, done = repair_pages._lock_characters, []

    def user_picks_an_image_first(backends, plans):
        for item, result in plans:
            if item.job.id == changed and not done:
                done.append(item.job.id)
                with seeded.connect() as conn:
                    conn.execute("update characters set image_url = 'user-library/chosen-meanwhile.png' "
                                 "where id = %s", (result.steps[-1].params["character_id"],))
        return original(backends, plans)

    monkeypatch.setattr(repair_pages, "_lock_characters", user_picks_an_image_first)
    report = backfill(open_backends(seeded), selection(seeded))
    assert done and changed not in {r.job_id for r in report.repaired} and not report.failed
    assert not report.changed  # handed back before any write, not caught by a write that matched nothing
    assert len(report.repaired) == repairable_total(seeded) - 1
    with seeded.connect() as conn:
        images = conn.execute("select image_url from characters where image_url like '%chosen-meanwhile%'").fetchall()
    assert images == [("user-library/chosen-meanwhile.png",)]

"""Faults, kills and races on the Postgres backend: each run reports clearly, loses nothing, and the
next run finishes. Trial counts are small by default; CHARFIX_HEAVY=1 runs the issue's full sizes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.audit import log as audit_log
from charfix.audit.log import AuditError, AuditLog
from charfix.diagnosis import Rules
from charfix.errors import BackendError, ConnectionLostError
from charfix.repository.postgres import PostgresRepository
from charfix.repository.base import JobQuery
from charfix.backends import Backends
from charfix.queries.selection import Selection
from charfix.repair.operations import backfill
from charfix.storage.local import LocalStorage
from conftest import charfix_executable
from snapshots import duplicate_rows, snapshot
from test_cli import _bulk_incidents, _normalized, args

HEAVY = os.environ.get("CHARFIX_HEAVY") == "1"
KILL_TRIALS = 10 if HEAVY else 3
RACE_JOBS = 500 if HEAVY else 120
REST_RACE_JOBS = 500 if HEAVY else 60


def selection(seeded) -> Selection:
    return Selection(query=JobQuery(since=seeded.now.replace(year=seeded.now.year - 1)), rules=Rules(now=seeded.now))


def open_backends(seeded, storage=None) -> Backends:
    return Backends(repository=PostgresRepository.connect(seeded.db_url), storage=storage or LocalStorage(seeded.storage))


def repairable_left(seeded) -> int:
    backends = open_backends(seeded)
    report = backfill(backends, selection(seeded), dry_run=True)
    backends.repository.close()
    return len(report.planned)


class FlakyStorage(LocalStorage):
    """Local storage whose nth copy fails, as a storage outage would."""

    def __init__(self, root, fail_at: int):
        super().__init__(root)
        self.copies, self.fail_at = 0, fail_at

    def copy(self, *args, **kwargs):
        self.copies += 1
        if self.copies == self.fail_at:
            raise BackendError("storage answered 503 on copy")
        return super().copy(*args, **kwargs)


def test_storage_failing_on_the_nth_copy_fails_that_job_only(seeded, tmp_path):
    backends = open_backends(seeded, FlakyStorage(seeded.storage, fail_at=2))
    audit = AuditLog(tmp_path / "audit.jsonl", "t", "test").open()
    report = backfill(backends, selection(seeded), audit=audit)
    assert len(report.failed) == 1 and "503" in report.failed[0].message
    assert len(report.repaired) == repairable_total(seeded) - 1
    assert repairable_left(seeded) == 1
    rerun = backfill(open_backends(seeded), selection(seeded))
    assert len(rerun.repaired) == 1 and not rerun.failed
    assert len(duplicate_rows(seeded.db_url)) == 1


def repairable_total(seeded) -> int:
    return len([c for c in seeded.sample.cases if c.state == "repairable"])


def dropping_on_second_insert(seeded) -> Backends:
    """Backends whose database connection is terminated by the server during the second insert."""
    backends = open_backends(seeded)
    repo = backends.repository
    original = repo.insert_library_item
    calls = {"n": 0}

    def drop_on_second_insert(item):
        calls["n"] += 1
        if calls["n"] == 2:
            with psycopg.connect(seeded.db_url, autocommit=True) as admin:
                admin.execute("select pg_terminate_backend(%s)", (repo.conn.info.backend_pid,))
        return original(item)

    repo.insert_library_item = drop_on_second_insert
    return backends


def test_the_database_connection_dropping_mid_run_stops_cleanly(seeded, tmp_path):
    backends = dropping_on_second_insert(seeded)
    audit = AuditLog(tmp_path / "audit.jsonl", "t", "test").open()
    with pytest.raises(ConnectionLostError, match="connection was lost"):
        # Pages of one job, so one job commits before the drop (test_repair_pages.py: a whole page).
        backfill(backends, selection(seeded), audit=audit, page_size=1)
    lines = audit_log.writes(audit_log.read(tmp_path / "audit.jsonl"))
    inserted = {line["job_id"] for line in lines if line["step"] == "insert_library_row"}
    interrupted = lines[-1]["job_id"]
    # The interrupted job's object copy happened and is logged; none of its row writes are.
    assert lines[-1]["step"] == "copy_object" and interrupted not in inserted and len(inserted) == 1
    rerun = backfill(open_backends(seeded), selection(seeded))
    assert not rerun.failed and repairable_left(seeded) == 0
    assert interrupted in {str(r.job_id) for r in rerun.repaired}
    assert len(rerun.repaired) == repairable_total(seeded) - len(inserted) - _repaired_without_insert(lines, inserted)


def _repaired_without_insert(lines, inserted) -> int:
    """Jobs finished in the first run whose plan had no insert (an update or upgrade only)."""
    finished = {line["job_id"] for line in lines if line["step"] in ("update_character_image", "upgrade_library_row")}
    return len(finished - inserted)


def test_an_audit_log_failing_mid_run_stops_before_the_next_write(seeded, tmp_path, monkeypatch):
    audit = AuditLog(tmp_path / "audit.jsonl", "t", "test").open()
    writes = {"n": 0}
    original = AuditLog._append

    def full_disk_on_third_job(self, lines, **kwargs):
        if any(line["phase"] == "pending" for line in lines):  # a page's row lines, just before its commit
            writes["n"] += 1
            if writes["n"] == 3:
                raise AuditError("cannot write the audit log: No space left on device")
        return original(self, lines, **kwargs)

    monkeypatch.setattr(AuditLog, "_append", full_disk_on_third_job)
    with pytest.raises(AuditError):
        # Pages of one job: the third job's lines are the third page's (test_repair_pages.py: a whole page).
        backfill(open_backends(seeded), selection(seeded), audit=audit, page_size=1)
    monkeypatch.setattr(AuditLog, "_append", original)
    lines = audit_log.writes(audit_log.read(tmp_path / "audit.jsonl"))
    committed = {line["job_id"] for line in lines if line["step"] != "copy_object"}
    assert len(committed) == 2  # the third job's row writes rolled back with their lines
    assert repairable_left(seeded) == repairable_total(seeded) - 2
    rerun = backfill(open_backends(seeded), selection(seeded))
    assert len(rerun.repaired) == repairable_total(seeded) - 2 and repairable_left(seeded) == 0


def test_an_unwritable_audit_log_stops_the_cli_with_exit_3_and_nothing_written(cli, seeded, tmp_path):
    # A log that can be opened but not written: /dev/full answers every write with ENOSPC.
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", "/dev/full"))
    assert result.code == 3 and "rolled back" in result.stderr, result.stderr
    assert repairable_left(seeded) == repairable_total(seeded)


@pytest.mark.parametrize("trial", range(KILL_TRIALS))
def test_sigkill_at_a_random_moment_then_a_normal_run_equals_an_uninterrupted_run(
        seeded, request, tmp_path, cli, trial):
    _bulk_incidents(seeded, 150)
    twin = request.getfixturevalue("seeded_twin")
    _bulk_incidents_like(seeded, twin)
    rng = random.Random(1000 + trial)
    log = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([charfix_executable(), *args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HOME": str(tmp_path)})
    # Kill once repairs are under way, at a random moment after the first logged write.
    deadline = time.monotonic() + 60
    while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.25))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill: lower the delay"
    finished = cli(*args(seeded, "backfill-portraits", "--yes", "--json"))
    assert finished.code == 0, finished.stderr
    assert cli(*args(twin, "backfill-portraits", "--yes")).code == 0
    mine = _normalized(snapshot(seeded.db_url, seeded.storage), seeded)
    theirs = _normalized(snapshot(twin.db_url, twin.storage), twin)
    for part in mine:
        from collections import Counter
        a, b = Counter(map(repr, mine[part])), Counter(map(repr, theirs[part]))
        assert (a - b, b - a) == (Counter(), Counter()), part
    assert len(duplicate_rows(seeded.db_url)) == 1
    with psycopg.connect(seeded.db_url) as conn:
        orphans = conn.execute("select count(*) from jobs where status in ('queued', 'processing') and "
                               "metadata->>'characterName' like 'Bulk %'").fetchone()[0]
    assert orphans == 0


def _bulk_incidents_like(source, twin) -> None:
    """Copy the bulk jobs of `source` into `twin`, so both start from the same data."""
    with psycopg.connect(source.db_url) as src, psycopg.connect(twin.db_url, autocommit=True) as dst:
        for table, where in (("jobs", "metadata->>'characterName' like 'Bulk %'"),
                             ("workspace_assets", "original_prompt = 'p'"),
                             ("characters", "name like 'Bulk %'")):
            rows = src.execute(f"select * from {table} where {where}").fetchall()
            rows = [tuple(Jsonb(v) if isinstance(v, (dict, list)) else v for v in r) for r in rows]
            columns = [d.name for d in src.execute(f"select * from {table} limit 0").description]
            for row in rows:
                marks = ", ".join(["%s"] * len(columns))
                dst.execute(f"insert into {table} ({', '.join(columns)}) values ({marks})", row)
        bulk = {str(r[0]) for r in src.execute("select id from jobs where metadata->>'characterName' like 'Bulk %'")}
    for path in (source.storage / "workspace-temp").rglob("*_*.png"):
        if path.name.split("_")[0] in bulk:
            target = twin.storage / path.relative_to(source.storage)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


def test_four_concurrent_backfills_repair_each_job_exactly_once(seeded, tmp_path):
    jobs = _bulk_incidents(seeded, RACE_JOBS)
    _race_four_backfills(seeded, tmp_path, jobs, args(seeded), env={})


def test_four_concurrent_backfills_over_rest_repair_each_job_exactly_once(seeded, tmp_path, key, server):
    """The same race over the Supabase REST backend, which has no row locks: the library row's id is
    derived from the job, so of two inserts one conflicts, and a run that loses a write re-diagnoses."""
    jobs = _bulk_incidents(seeded, REST_RACE_JOBS)
    env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    _race_four_backfills(seeded, tmp_path, jobs, [], env=env)


def _race_four_backfills(seeded, tmp_path, jobs, backend_args: list[str], *, env: dict[str, str]) -> None:
    """Four backfills at once: every job repaired by exactly one of them, each inserted once, the sum of
    their reports equal to the number of repairable jobs, no duplicate row (the demo's own excepted)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPABASE_")}
    procs = [subprocess.Popen([charfix_executable(), *backend_args, "backfill-portraits", "--yes", "--json",
                               "--audit-log", str(tmp_path / f"a{i}.jsonl")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**base, "HOME": str(tmp_path), **env})
             for i in range(4)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    assert sum(r["repaired"] for r in reports) == len(jobs) + repairable_total(seeded)
    assert sum(r["failed"] for r in reports) == 0
    lines = [line for i in range(4) for line in audit_log.writes(audit_log.read(tmp_path / f"a{i}.jsonl"))]
    inserts = [line["job_id"] for line in lines if line["step"] == "insert_library_row"]
    assert len(inserts) == len(set(inserts)) and set(inserts) >= {str(job) for job in jobs}
    assert len(duplicate_rows(seeded.db_url)) == 1 and repairable_left(seeded) == 0

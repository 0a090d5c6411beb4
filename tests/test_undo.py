"""Run ids, `history` and `undo` through the real console script, on both backends and both trails
(docs/audit.md): a whole backfill of the demo's cases undone leaves the four tables and both buckets
exactly as they were; a row changed since is a conflict and kept; records are claims (an edited log
cannot make undo touch another user's data); and killed runs on the database trail leave no record
without its write and no write without its record."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from charfix.demo.cases import INCIDENT_JOB
from charfix.audit.database import SCHEMA_SQL
from conftest import charfix_executable
from tests.supabase_server import SupabaseTestServer, make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TABLES = ("jobs", "workspace_assets", "characters", "user_library")


def state(seeded) -> dict:
    """Every column of every row of the four tables, and every object's bytes. Only
    characters.updated_at is left out: the app's own trigger moves it on every update, which no
    client can prevent (docs/audit.md, "Undo": its limits)."""
    with seeded.connect() as conn:
        tables = {t: conn.execute(f"select to_jsonb(r) - 'updated_at' from {t} r order by id").fetchall()
                  if t == "characters" else conn.execute(f"select to_jsonb(r) from {t} r order by id").fetchall()
                  for t in TABLES}
    objects = {str(p.relative_to(seeded.storage)): p.read_bytes() for p in sorted(seeded.storage.rglob("*"))
               if p.is_file() and not p.name.startswith(".")}
    return {"tables": tables, "objects": objects}


@pytest.fixture(params=["postgres-file", "postgres-database", "supabase-file"])
def target(request, seeded, tmp_path):
    """How the console script reaches the seeded data, and which trail it keeps."""
    log = tmp_path / "audit.jsonl"
    if request.param.startswith("postgres"):
        env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage)}
        if request.param == "postgres-database":
            with seeded.connect() as conn:
                conn.execute(SCHEMA_SQL)
        yield request.param, {**env, "CHARFIX_AUDIT_LOG": str(log)}, log
        return
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        yield request.param, {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key,
                              "CHARFIX_AUDIT_LOG": str(log)}, log


def backfill(cli, env) -> str:
    result = cli("backfill-portraits", "--yes", "--json", env=env)
    assert result.code == 0, result.stderr
    run = json.loads(result.stdout)["run_id"]
    assert f"run {run}" in result.stderr and json.loads(result.stdout)["repaired"] >= 8
    return run


def trail_size(seeded, log: Path) -> tuple[int, int]:
    with seeded.connect() as conn:
        there = conn.execute("select to_regclass('charfix.audit') is not null").fetchone()[0]
        rows = conn.execute("select count(*) from charfix.audit").fetchone()[0] if there else 0
    return rows, (log.stat().st_size if log.exists() else 0)


def test_undo_of_a_whole_backfill_restores_every_row_and_object_and_a_second_undo_writes_nothing(cli, seeded, target):
    name, env, log = target
    before = state(seeded)
    run = backfill(cli, env)
    assert state(seeded) != before
    undone = cli("undo", run, "--yes", "--json", env=env)
    assert undone.code == 0, undone.stderr
    report = json.loads(undone.stdout)
    assert report["reverts"] == run and report["reverted"] >= 20 and not report["conflict"]
    assert report["run_id"] and report["run_id"] != run and f"run {report['run_id']}" in undone.stderr
    assert state(seeded) == before  # row for row, byte for byte
    size = trail_size(seeded, log)
    again = cli("undo", run[:8], "--yes", "--json", env=env)
    assert again.code == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["reverted"] == 0 and second["already_undone"] == report["reverted"] and second["run_id"] is None
    assert state(seeded) == before and trail_size(seeded, log) == size  # nothing written, nothing recorded
    # The undo is a run of its own in the trail, with the job's history.
    history = json.loads(cli("history", str(INCIDENT_JOB), "--json", env=env).stdout)
    assert [r["command"] for r in history["runs"]] == ["backfill-portraits", "undo"]
    assert history["runs"][1]["reverts"] == run
    assert history["trail"].startswith("database" if name == "postgres-database" else "file")


def test_a_row_changed_since_the_run_is_a_conflict_and_kept(cli, seeded, target):
    _, env, _ = target
    before = state(seeded)
    run = backfill(cli, env)
    incident = seeded.case("incident")
    with seeded.connect() as conn:  # the user picks another portrait in the app meanwhile
        character_id, user_id = conn.execute(
            "select (metadata->>'character_id')::uuid, user_id from jobs where id = %s", (INCIDENT_JOB,)).fetchone()
        chosen = f"user-library/{user_id}/chosen-by-the-user.png"
        conn.execute("update characters set image_url = %s where id = %s", (chosen, character_id))
    result = cli("undo", run, "--yes", "--json", env=env)
    assert result.code == 1, result.stderr
    report = json.loads(result.stdout)
    conflicts = [i for i in report["items"] if i["outcome"] == "conflict"]
    assert [i["target"] for i in conflicts] == [f"characters/{character_id}"]
    assert all(i["outcome"] == "reverted" for i in report["items"] if i not in conflicts)
    after = state(seeded)
    with seeded.connect() as conn:
        assert conn.execute("select image_url from characters where id = %s", (character_id,)).fetchone()[0] == chosen
    assert after["objects"] == before["objects"]
    for table in ("jobs", "workspace_assets", "user_library"):
        assert after["tables"][table] == before["tables"][table], table
    kept = [row for row in after["tables"]["characters"] if row[0]["id"] == str(character_id)]
    assert [r for r in after["tables"]["characters"] if r not in kept] == \
        [r for r in before["tables"]["characters"] if r[0]["id"] != str(character_id)]
    assert incident.job_id == INCIDENT_JOB


def test_history_of_the_incident_names_the_run_that_repaired_it_with_before_and_after(cli, seeded, target):
    _, env, _ = target
    run = backfill(cli, env)
    result = cli("history", "69e0cd17", "--json", env=env)
    assert result.code == 0, result.stderr
    history = json.loads(result.stdout)
    assert history["job_id"] == str(INCIDENT_JOB)
    [repair] = history["runs"]
    assert repair["run_id"] == run and repair["command"] == "backfill-portraits" and repair["operator"]
    assert "backfill-portraits --yes" in repair["command_line"]
    steps = {w["step"]: w for w in repair["writes"]}
    assert {"copy_object", "complete_job", "link_character", "insert_library_row",
            "update_character_image"} <= set(steps)
    status = next(c for c in steps["complete_job"]["changed"] if c["field"] == "status")
    assert (status["before"], status["after"]) == ("processing", "completed")
    copy = steps["copy_object"]["after"]
    assert copy["size"] > 0 and len(copy["md5"]) == 32
    people = cli("history", "69e0cd17", env=env)
    assert people.code == 0 and run in people.stdout and "status: processing -> completed" in people.stdout


def test_the_command_line_in_the_trail_has_no_secret(cli, seeded, tmp_path):
    log = tmp_path / "audit.jsonl"
    password_url = seeded.db_url + " password=hunter2-secret" if "password" not in seeded.db_url else seeded.db_url
    result = cli("--db-url", password_url, "--storage-dir", str(seeded.storage), "backfill-portraits", "--yes",
                 "--audit-log", str(log))
    assert result.code == 0, result.stderr
    start = next(json.loads(line) for line in log.read_text().splitlines() if '"start"' in line)
    assert "backfill-portraits --yes" in start["command_line"] and "hunter2-secret" not in log.read_text()


# -- records are claims ---------------------------------------------------------------------------


def test_an_edited_log_cannot_make_undo_touch_another_users_data(cli, seeded, tmp_path):
    """A forged run names the incident job but another user's object and character: both refused."""
    log = tmp_path / "audit.jsonl"
    env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage), "CHARFIX_AUDIT_LOG": str(log)}
    with seeded.connect() as conn:
        victim_id, victim, image = conn.execute(
            "select id, user_id, image_url from characters where user_id <> (select user_id from jobs where id = %s) "
            "order by id limit 1", (INCIDENT_JOB,)).fetchone()
    victim_object = seeded.storage / "user-library" / str(victim) / f"{INCIDENT_JOB}_x.png"
    victim_object.parent.mkdir(parents=True, exist_ok=True)
    victim_object.write_bytes(b"the victim's own portrait")
    run, tx = str(uuid.uuid4()), str(uuid.uuid4())
    base = {"v": 2, "time": "2026-11-30T00:00:00+00:00", "run": run, "operator": "mallory", "command": "repair",
            "job_id": str(INCIDENT_JOB)}
    lines = [
        {**base, "phase": "start"},
        {**base, "phase": "intent", "write": "w1", "step": "copy_object",
         "target": f"user-library/{victim}/{INCIDENT_JOB}_x.png", "before": None, "after": {"size": 25}},
        {**base, "phase": "done", "write": "w1", "step": "copy_object",
         "target": f"user-library/{victim}/{INCIDENT_JOB}_x.png", "after": {"size": 25}},
        {**base, "phase": "pending", "tx": tx, "xid": 1, "step": "update_character_image",
         "target": f"characters/{victim_id}", "before": {"image_url": None, "reference_image_url": None,
                                                         "seed_locked": None},
         "after": {"image_url": image, "reference_image_url": None, "seed_locked": None}},
        {**base, "phase": "committed", "tx": tx, "xid": 1, "jobs": [str(INCIDENT_JOB)]},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = state(seeded)
    result = cli("undo", run, "--yes", "--json", env=env)
    assert result.code == 6, result.stderr
    report = json.loads(result.stdout)
    assert [i["outcome"] for i in report["items"]] == ["refused", "refused"]
    assert victim_object.read_bytes() == b"the victim's own portrait" and state(seeded) == before


def test_undo_asks_on_a_terminal_and_refuses_without_yes_off_one(cli, seeded, tmp_path):
    env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage),
           "CHARFIX_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    run = backfill(cli, env)
    repaired = state(seeded)
    refused = cli("undo", run, env=env)
    assert refused.code == 2 and "--yes" in refused.stderr and state(seeded) == repaired
    dry = cli("undo", run, "--dry-run", env=env)
    assert dry.code == 0 and "would_revert" in dry.stdout and "target" in dry.stdout and state(seeded) == repaired
    unknown = cli("undo", "0000000000", env=env)
    assert unknown.code == 4 and "no run" in unknown.stderr


def test_init_shows_the_sql_writes_nothing_on_dry_run_and_needs_yes(cli, seeded):
    env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage)}

    def installed() -> bool:
        with seeded.connect() as conn:
            return conn.execute("select to_regclass('charfix.audit') is not null").fetchone()[0]

    dry = cli("init", "--dry-run", env=env)
    assert dry.code == 0 and "create table if not exists charfix.audit" in dry.stdout and not installed()
    assert cli("init", env=env).code == 2 and not installed()
    doctor = cli("doctor", "--json", env=env)
    assert any(c["check"] == "audit trail" and c["detail"].startswith("file") for c in json.loads(doctor.stdout))
    assert cli("init", "--yes", env=env).code == 0 and installed()
    doctor = cli("doctor", "--json", env=env)
    assert any(c["check"] == "audit trail" and c["detail"] == "database table charfix.audit"
               for c in json.loads(doctor.stdout))


def test_init_over_rest_says_the_file_is_the_only_trail(cli, seeded):
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        result = cli("init", "--yes", env={"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key})
    assert result.code == 3 and "only trail" in result.stderr


# -- kill trials on the database trail ----------------------------------------------------------------


SLOW_INSERTS = """
create or replace function charfix_test_slow() returns trigger language plpgsql as $$
begin perform pg_sleep(0.05); return new; end $$;
create trigger charfix_test_slow before insert or update on user_library
    for each row execute function charfix_test_slow();
create trigger charfix_test_slow before update on characters
    for each row execute function charfix_test_slow();
-- and at commit: a kill then lands between a page's last statement and the end of its commit
create or replace function charfix_test_slow_commit() returns trigger language plpgsql as $$
begin perform pg_sleep(0.05); return null; end $$;
create constraint trigger charfix_test_slow_commit after update on jobs deferrable initially deferred
    for each row execute function charfix_test_slow_commit();
"""


def _records(conn, after_id: int) -> list[tuple]:
    return conn.execute("select phase, write_id::text, step, target, after from charfix.audit where id > %s "
                        "order by id", (after_id,)).fetchall()


def _without(row: dict | None, column: str) -> dict | None:
    return None if row is None else {k: v for k, v in row.items() if k != column}


def _row_holds(conn, target: str, after: dict) -> bool:
    table, _, ident = target.partition("/")
    row = conn.execute(f"select to_jsonb(r) from {table} r where id = %s", (ident,)).fetchone()
    if row is None:
        return False
    return all(json.dumps(row[0].get(k), sort_keys=True) == json.dumps(v, sort_keys=True)
               or (k.endswith("_at") and v is not None and row[0].get(k) is not None) for k, v in after.items()
               if k in row[0])


def test_kill_trials_on_the_database_trail_leave_no_record_without_its_write_nor_a_write_without_one(
        seeded, tmp_path):
    """SIGKILL at random points of a backfill (after a random number of records became visible);
    then every committed record's write is there, every changed row and new object has a record, and
    undo of the killed run restores the seeded state exactly."""
    with seeded.connect() as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute(SLOW_INSERTS)
    seed_state = state(seeded)
    env = {**os.environ, "SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage),
           "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "NO_COLOR": "1"}
    rng = random.Random(14)
    killed_mid_run = 0
    for trial in range(6):
        with seeded.connect() as conn:
            start = conn.execute("select coalesce(max(id), 0) from charfix.audit").fetchone()[0]
        wanted = rng.randint(1, 30)
        proc = subprocess.Popen([charfix_executable(), "backfill-portraits", "--yes", "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with seeded.connect() as conn:
            while proc.poll() is None:
                if conn.execute("select count(*) from charfix.audit where id > %s", (start,)).fetchone()[0] >= wanted:
                    time.sleep(rng.random() * 0.05)
                    proc.send_signal(signal.SIGKILL)
                    killed_mid_run += 1
                    break
                time.sleep(0.005)
        proc.wait()
        check_and_undo(seeded, seed_state, start, env, trial)
    assert killed_mid_run >= 1


def test_runs_recorded_in_the_file_before_init_stay_readable_and_undoable(cli, seeded, tmp_path):
    env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage),
           "CHARFIX_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    before = state(seeded)
    run = backfill(cli, env)  # in the file
    assert cli("init", "--yes", env=env).code == 0
    undone = cli("undo", run, "--yes", "--json", env=env)
    assert undone.code == 0, undone.stderr
    assert state(seeded) == before and "database table charfix.audit" in undone.stderr
    history = json.loads(cli("history", str(INCIDENT_JOB), "--json", env=env).stdout)
    assert [(r["run_id"], r["command"]) for r in history["runs"]] == [
        (run, "backfill-portraits"), (json.loads(undone.stdout)["run_id"], "undo")]


def check_and_undo(seeded, seed_state: dict, start: int, env: dict, trial) -> None:
    """After a killed run on the database trail: no record without its write, no write without its
    record; then undo of every run since `start` gives back the seeded state exactly."""
    with seeded.connect() as conn:
        runs = [r[0] for r in conn.execute(
            "select distinct run_id::text from charfix.audit where id > %s and reverts is null", (start,))]
        records = _records(conn, start)
        # No record without its write: every row record's value is there; every done object exists.
        for phase, _, step, target, after in records:
            if phase == "write":
                assert _row_holds(conn, target, after), (trial, step, target)
            elif phase == "done" and step == "copy_object":
                assert (seeded.storage / target).is_file(), (trial, target)
        recorded_rows = {t for p, _, _, t, _ in records if p == "write"}
        announced = {t for p, _, _, t, _ in records if p == "intent"}
    # No write without its record: every row that differs from the seed, and every new object.
    now = state(seeded)
    for table in ("jobs", "characters", "user_library"):
        seeded_rows = {r[0]["id"]: r[0] for r in seed_state["tables"][table]}
        for (row,) in now["tables"][table]:
            # portrait_count is the app's trigger following a library row: not charfix's write.
            if _without(seeded_rows.get(row["id"]), "portrait_count") != _without(row, "portrait_count"):
                assert f"{table}/{row['id']}" in recorded_rows, (trial, table, row["id"])
    for path in set(now["objects"]) - set(seed_state["objects"]):
        assert path in announced, (trial, path)
    for run in runs:
        undone = subprocess.run([charfix_executable(), "undo", run, "--yes"], env=env, capture_output=True,
                                text=True)
        assert undone.returncode == 0, undone.stderr
    assert state(seeded) == seed_state, trial


@pytest.mark.parametrize("crash_after", [1, 2, 4, 7, 11, 16])
def test_a_run_crashed_after_its_nth_write_on_the_database_trail_is_recorded_exactly_and_undone(
        cli, seeded, tmp_path, crash_after):
    """The deterministic kill points (tests/crashing.py): right after the Nth write (an object copied
    and its record still open, or rows written in a transaction that never commits)."""
    with seeded.connect() as conn:
        conn.execute(SCHEMA_SQL)
    seed_state = state(seeded)
    env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage)}
    crashed = cli("backfill-portraits", "--yes", env=env, crash_after=crash_after)
    assert crashed.code == 70, crashed.stderr
    full_env = {**os.environ, **env, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"), "NO_COLOR": "1"}
    check_and_undo(seeded, seed_state, 0, full_env, crash_after)


def test_undo_on_a_terminal_shows_the_target_and_each_item_then_asks(cli, seeded, tmp_path):
    import pexpect

    from conftest import spawn_on_pty

    log = tmp_path / "audit.jsonl"
    env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage), "CHARFIX_AUDIT_LOG": str(log)}
    before = state(seeded)
    run = backfill(cli, env)
    child = spawn_on_pty(tmp_path, ["undo", run, "--job", "69e0cd17"], rows=60, columns=220, timeout=60, env=env)
    child.expect("target")
    child.expect("database t_")
    child.expect("would_revert +restore characters/")
    child.expect(r"status: completed -> processing")
    child.expect(r"delete object user-library/")
    child.expect(rf"Revert these 5 write\(s\) of run {run[:8]} on ")
    child.send("y")
    child.expect("reverted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    after = state(seeded)
    with seeded.connect() as conn:
        status = conn.execute("select status from jobs where id = %s", (INCIDENT_JOB,)).fetchone()[0]
    assert status == "processing" and after != before  # only the incident's writes were reverted
    assert cli("undo", run, "--yes", env=env).code == 0 and state(seeded) == before


def test_report_reads_the_database_trail_once_it_exists(cli, seeded):
    env = {"SUPABASE_DB_URL": seeded.db_url, "CHARFIX_STORAGE_DIR": str(seeded.storage)}
    with seeded.connect() as conn:
        conn.execute(SCHEMA_SQL)
    backfill(cli, env)
    report = cli("report", "69e0cd17", env=env)
    assert report.code == 0, report.stderr
    for step in ("complete_job", "link_character", "copy_object", "insert_library_row", "update_character_image"):
        assert step.replace("_", "\\_") in report.stdout, step  # Markdown-escaped

"""The audit log is a faithful record (docs/repairs.md, "The audit log"; docs/reliability.md, "The audit
log"): no write without a line, no line claiming a write that did not happen, even across kills, on
both backends; one record is one line for any reader; the file is private and never a symlink.

Kill trials are few by default; CHARFIX_HEAVY=1 runs the issue's full count (>= 30 over both backends)."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.audit import log as audit
from charfix.audit.log import AuditLog
from charfix.demo.cases import png
from charfix.repository.postgres import PostgresRepository
from charfix.backends import Backends
from charfix.storage.local import LocalStorage
from conftest import charfix_executable
from test_cli import _bulk_incidents, args

HEAVY = os.environ.get("CHARFIX_HEAVY") == "1"
TRIALS = 16 if HEAVY else 6  # per backend, half SIGKILL and half SIGTERM
KILL_JOBS = {"postgres": 150, "rest": 40}


# -- what the database and the buckets hold, and what the log says ------------------------------------

def state(db_url: str, storage: Path) -> dict[str, dict]:
    """Every target a repair can write, keyed as the audit log names it, with the value it checks."""
    with psycopg.connect(db_url) as conn:
        jobs = {f"jobs/{i}": (s, c) for i, s, c in conn.execute("select id, status, metadata->>'character_id' from jobs")}
        characters = {f"characters/{i}": u for i, u in conn.execute("select id, image_url from characters")}
        library = {f"user_library/{i}": (t, c) for i, t, c in conn.execute(
            "select id, roleplay_metadata->>'type', character_id from user_library")}
    objects = {str(p.relative_to(storage)): p.stat().st_size for p in storage.rglob("*")
               if p.is_file() and not p.name.startswith(".")}
    return {**jobs, **characters, **library, **objects}


def assert_log_matches(lines: list[dict], before: dict, after: dict) -> None:
    """Every change between `before` and `after` has exactly one line of a write that happened, and every
    such line's effect is there; no announced write or transaction is left without its outcome."""
    made = audit.writes(lines)
    per_write = Counter((line["step"], line["target"]) for line in made)
    assert [w for w, n in per_write.items() if n > 1] == [], "a write claimed twice (one of them did not happen)"
    changed = {target for target in after if before.get(target) != after[target]}
    assert changed - {target for _, target in per_write} == set(), "writes without a line"
    for line in made:
        assert line["target"] in after, f"a line claims {line['target']}, which is not there"
        assert _holds(line, after[line["target"]]), f"a line claims a write that is not there: {line}"
    intents = {line["write"] for line in lines if line["phase"] == "intent"}
    closed = {line["write"] for line in lines if line["phase"] in ("done", "failed", "not_done")}
    pending = {line["tx"] for line in lines if line["phase"] == "pending"}
    settled = {line["tx"] for line in lines if line["phase"] in ("committed", "rolled_back")}
    assert intents <= closed and pending <= settled, "lines left without an outcome after the next run"


def _holds(line: dict, now) -> bool:
    after = line["after"]
    match line["step"]:
        case "complete_job" | "mark_failed":
            return now[0] == after["status"]
        case "link_character":
            return now[1] == after["metadata"]["character_id"]
        case "update_character_image":
            return now == after["image_url"]
        case "insert_library_row" | "upgrade_library_row":
            return now[0] == "character_portrait"
        case "copy_object":
            return now == after["size"]
    raise AssertionError(line["step"])


# -- kill trials ------------------------------------------------------------------------------------

def _kill_trial(seeded, tmp_path, backend_args: list[str], env: dict[str, str], trial: int, jobs: int) -> None:
    rng = random.Random(7000 + trial)
    sig = signal.SIGKILL if trial % 2 == 0 else signal.SIGTERM
    _bulk_incidents(seeded, jobs)
    before = state(seeded.db_url, seeded.storage)
    log = tmp_path / "audit.jsonl"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPABASE_")}
    command = [charfix_executable(), *backend_args, "backfill-portraits", "--yes", "--audit-log", str(log)]
    if trial % 3 == 2:
        command += ["--concurrency", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**base, "HOME": str(tmp_path), **env})
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.6))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    if sig == signal.SIGKILL:
        assert proc.returncode in (-signal.SIGKILL, 0), err
    else:
        assert proc.returncode in (143, 0), err
        assert proc.returncode == 0 or "stopped by SIGTERM" in err, err
    finished = subprocess.run([*command[:command.index("--audit-log") + 2]], capture_output=True, text=True,
                              env={**base, "HOME": str(tmp_path), **env}, timeout=300)
    assert finished.returncode == 0, finished.stderr
    lines = audit.read(log)
    assert_log_matches(lines, before, state(seeded.db_url, seeded.storage))
    _note_trial(backend_args, sig, proc.returncode, lines)
    with psycopg.connect(seeded.db_url) as conn:
        left = conn.execute("select count(*) from jobs where status in ('queued', 'processing') and "
                            "metadata->>'characterName' like 'Bulk %'").fetchone()[0]
    assert left == 0


def _note_trial(backend_args, sig, code: int, lines: list[dict]) -> None:
    """For docs/reliability.md's figures: CHARFIX_TRIAL_NOTES=path collects one line per trial."""
    notes = os.environ.get("CHARFIX_TRIAL_NOTES")
    if notes:
        settled = Counter(line["phase"] for line in lines if line.get("settled"))
        with open(notes, "a") as out:
            out.write(json.dumps({"backend": "postgres" if backend_args else "rest", "signal": sig.name,
                                  "exit": code, "settled": dict(settled)}) + "\n")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_killed_run_over_postgres_leaves_a_log_that_matches_the_database_and_bucket(seeded, tmp_path, trial):
    _kill_trial(seeded, tmp_path, args(seeded), {}, trial, KILL_JOBS["postgres"])


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_killed_run_over_rest_leaves_a_log_that_matches_the_database_and_bucket(seeded, tmp_path, key, server,
                                                                                  trial):
    env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    _kill_trial(seeded, tmp_path, [], env, trial, KILL_JOBS["rest"])


# -- the moments a kill can fall on, made exactly ----------------------------------------------------

def _backends(seeded) -> Backends:
    return Backends(repository=PostgresRepository.connect(seeded.db_url), storage=LocalStorage(seeded.storage))


def _job_in_processing(seeded) -> uuid.UUID:
    with psycopg.connect(seeded.db_url) as conn:
        return conn.execute("select id from jobs where status = 'processing' order by id limit 1").fetchone()[0]


@pytest.mark.parametrize("commits", [False, True])
def test_lines_synced_before_a_commit_that_a_kill_interrupted_are_settled_by_the_next_run(seeded, tmp_path, commits):
    """The window the old log got wrong: lines synced, then the process dies before (or after) the
    commit. The next run asks Postgres what became of the transaction and says so."""
    job = _job_in_processing(seeded)
    backends = _backends(seeded)
    repo = backends.repository
    log = AuditLog(tmp_path / "audit.jsonl", "t", "test").open(backends)
    try:
        with repo.locked(job):
            repo.conn.execute("update jobs set status = 'completed' where id = %s", (job,))
            log.record(job_id=job, step="complete_job", target=f"jobs/{job}", before={"status": "processing"},
                       after={"status": "completed"})
            log.flush(repo.transaction_id)
            if not commits:
                raise RuntimeError("killed")  # rolls back; the process would have died without a word
    except RuntimeError:
        pass
    log.close()  # no committed/rolled_back line: as after a kill
    lines = audit.read(tmp_path / "audit.jsonl")
    assert [line["phase"] for line in lines] == ["start", "pending"]
    AuditLog(tmp_path / "audit.jsonl", "t", "next").open(_backends(seeded)).close()
    lines = audit.read(tmp_path / "audit.jsonl")
    settled = [line for line in lines if line.get("settled")]
    assert [line["phase"] for line in settled] == ["committed" if commits else "rolled_back"]
    assert settled[0]["tx"] == lines[1]["tx"] and lines[-1]["phase"] == "checkpoint"
    assert [line["target"] for line in audit.writes(lines)] == ([f"jobs/{job}"] if commits else [])
    with psycopg.connect(seeded.db_url) as conn:
        status = conn.execute("select status from jobs where id = %s", (job,)).fetchone()[0]
    assert status == ("completed" if commits else "processing")


@pytest.mark.parametrize("landed", [False, True])
def test_an_object_write_announced_but_never_closed_is_settled_by_looking_at_the_bucket(seeded, tmp_path, landed):
    backends = _backends(seeded)
    log = AuditLog(tmp_path / "audit.jsonl", "t", "test").open(backends)
    key = f"{uuid.uuid4()}/job.png"
    intent = log.intent(job_id=uuid.uuid4(), step="copy_object", target=f"user-library/{key}", before=None,
                        after={"source": "workspace-temp/x.png", "size": 3})
    if landed:
        backends.storage.write("user-library", key, b"png", content_type="image/png")
    log.close()
    AuditLog(tmp_path / "audit.jsonl", "t", "next").open(_backends(seeded)).close()
    lines = audit.read(tmp_path / "audit.jsonl")
    outcome = [line for line in lines if line.get("write") == intent.write and line["phase"] != "intent"]
    assert [line["phase"] for line in outcome] == ["done" if landed else "not_done"]
    assert len(audit.writes(lines)) == int(landed)


def test_a_log_that_cannot_be_written_stops_the_run_before_any_copy(cli, seeded):
    """/dev/full opens but answers every write with ENOSPC: the intent line of the first copy fails,
    so the copy is never made (the old log copied first and logged after)."""
    before = state(seeded.db_url, seeded.storage)
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", "/dev/full"))
    assert result.code == 3 and "No space left on device" in result.stderr, result.stderr
    assert state(seeded.db_url, seeded.storage) == before


def test_a_cut_last_line_is_terminated_before_the_next_run_appends(cli, seeded, tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b'{"v": 2, "phase": "intent", "job_id": "cut sho')
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log)))
    assert result.code == 0, result.stderr
    raw = log.read_bytes().split(b"\n")
    assert raw[0] == b'{"v": 2, "phase": "intent", "job_id": "cut sho'
    assert json.loads(raw[1])["phase"] == "cut"
    assert all(json.loads(line) for line in raw[1:] if line)  # every later line is whole
    assert audit.writes(audit.read(log))


def _plant_incident(seeded, name: str, prompt: str) -> uuid.UUID:
    """One stuck portrait job with the prompt the user typed, as an app user can write it."""
    user, job = uuid.uuid4(), uuid.uuid4()
    created = seeded.now - timedelta(hours=2)
    key = f"{user}/{job}_1.png"
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values (%s, %s, 'image', "
                     "'processing', %s, %s)", (job, user, Jsonb({"destination": "character_portrait",
                                                                 "characterName": name}), created))
        conn.execute("insert into workspace_assets (user_id, job_id, asset_type, temp_storage_path, file_size_bytes, "
                     "mime_type, generation_seed, original_prompt, model_used, created_at) values (%s, %s, 'image', %s, "
                     "70, 'image/png', 42, %s, 'm', %s)", (user, job, key, prompt, created + timedelta(seconds=5)))
        conn.execute("insert into characters (user_id, name, description, created_at) values (%s, %s, 'd', %s)",
                     (user, name, created + timedelta(seconds=20)))
    path = seeded.storage / "workspace-temp" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png((1, 2, 3)))
    return job


def test_line_breaks_in_user_text_cannot_forge_a_record_for_any_reader(cli, seeded, tmp_path):
    forged = '", "operator": "someone else", "step": "nothing"}'
    prompt = f"Luna\u2028{forged}\u0085{forged}\u2029x\r\n{forged}"
    job = _plant_incident(seeded, "Luna", prompt)
    log = tmp_path / "audit.jsonl"
    assert cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log))).code == 0
    text = log.read_text(encoding="utf-8")
    assert text.isascii()
    records = [json.loads(piece) for piece in text.splitlines()]  # splitlines breaks at U+2028 and U+0085
    prompts = [r["after"]["original_prompt"] for r in records
               if r.get("step") == "insert_library_row" and r["job_id"] == str(job)]
    assert prompts == [prompt]
    assert "someone else" not in {r.get("operator") for r in records}


def test_the_log_and_its_folder_are_private(cli, seeded, tmp_path):
    log = tmp_path / "fresh" / "state" / "audit.jsonl"
    assert cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log))).code == 0
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700


def test_a_log_others_could_read_is_made_private(cli, seeded, tmp_path):
    """A log left 0644 by an older charfix holds users' data: the next writing run makes it 0600."""
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    log.chmod(0o644)
    assert cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log))).code == 0
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_symlink_at_the_log_path_is_refused_with_exit_3(cli, seeded, tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone's file\n")
    log = tmp_path / "audit.jsonl"
    log.symlink_to(target)
    before = state(seeded.db_url, seeded.storage)
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log)))
    assert result.code == 3 and "symbolic link" in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert target.read_text() == "someone's file\n"
    assert state(seeded.db_url, seeded.storage) == before


def test_user_text_cannot_plant_a_checkpoint_that_hides_an_open_transaction(seeded, tmp_path):
    """A checkpoint is recognised by a raw newline followed by its opening bytes; user text is escaped,
    so a prompt holding those characters is no checkpoint, and the open lines before it are settled."""
    job = _job_in_processing(seeded)
    backends = _backends(seeded)
    repo = backends.repository
    log = AuditLog(tmp_path / "audit.jsonl", "t", "test").open(backends)
    planted = '\n{"v": 2, "phase": "checkpoint", "time": "x", "run": "y"}\n'
    with repo.locked(job):
        repo.conn.execute("update jobs set status = 'completed' where id = %s", (job,))
        log.record(job_id=job, step="complete_job", target=f"jobs/{job}", before={"status": "processing"},
                   after={"status": "completed", "error_message": planted, "checkpoint": True})
        log.flush(repo.transaction_id)
    log.close()  # committed, but killed before its line
    AuditLog(tmp_path / "audit.jsonl", "t", "next").open(_backends(seeded)).close()
    lines = audit.read(tmp_path / "audit.jsonl")
    assert [line["phase"] for line in lines if line.get("settled")] == ["committed"]
    assert [line["target"] for line in audit.writes(lines)] == [f"jobs/{job}"]


def test_a_clean_run_ends_with_a_checkpoint_so_the_next_reads_nothing_back(cli, seeded, tmp_path, monkeypatch):
    log = tmp_path / "audit.jsonl"
    assert cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log))).code == 0
    lines = audit.read(log)
    assert lines[-1]["phase"] == "checkpoint" and len(audit.writes(lines)) > 0
    fd = os.open(log, os.O_RDONLY)
    try:
        assert audit._tail_since_checkpoint(fd) == []
        monkeypatch.setattr(audit, "TAIL_BLOCK", 64)  # the checkpoint's start straddles two blocks
        assert audit._tail_since_checkpoint(fd) == []
    finally:
        os.close(fd)

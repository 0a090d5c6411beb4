"""SIGTERM and SIGINT stop a backfill cleanly (docs/cron.md, "Stopping a run"): no new page or job
starts, the one in flight finishes or rolls back whole, a summary of what was done and what remains
goes to stderr, and the exit code is 143 / 130. A second signal stops at once; Postgres rolls back
the page in flight, and the next run settles its audit lines. Driven through the real console script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psycopg
import pytest

from charfix.audit import log as audit
from conftest import charfix_executable
from test_audit import assert_log_matches, state
from test_cli import _bulk_incidents, args

PAGE = 100  # service.BACKFILL_PAGE


def _start(command: list[str], tmp_path, env: dict[str, str] | None = None) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPABASE_")}
    return subprocess.Popen([charfix_executable(), *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**base, "HOME": str(tmp_path), "NO_COLOR": "1", **(env or {})})


def _once_writing(proc: subprocess.Popen, log) -> None:
    """Wait until the run has logged its first write: the signal then lands in the middle of the work."""
    deadline = time.monotonic() + 120
    while not (log.exists() and log.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before it wrote anything"


def _halves(seeded, jobs) -> list:
    """Bulk jobs neither untouched nor whole: completed without their library row, or the reverse."""
    with psycopg.connect(seeded.db_url) as conn:
        return conn.execute(
            "select j.id from jobs j left join user_library l on l.generation_metadata->>'job_id' = j.id::text where j.id = any(%s) and "
            "((j.status = 'completed') <> (l.id is not null))", (jobs,)).fetchall()


@pytest.mark.parametrize("sig, code, lanes", [(signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 1),
                                               (signal.SIGTERM, 143, 2)])
def test_a_signal_stops_the_backfill_after_the_page_in_flight_with_a_summary(seeded, tmp_path, sig, code, lanes):
    jobs = _bulk_incidents(seeded, 592)  # with the demo's 8: six pages of 100
    log = tmp_path / "audit.jsonl"
    proc = _start(args(seeded, "backfill-portraits", "--yes", "--json", "--concurrency", str(lanes),
                       "--audit-log", str(log)), tmp_path)
    _once_writing(proc, log)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    report = json.loads(out)
    assert f"stopped by {sig.name}" in err and "not attempted; run again to finish them" in err
    assert f"{report['repaired']} job(s) repaired" in err
    assert report["not_attempted_stopped"] > 0  # no new page started after the signal
    assert report["repaired"] + report["not_attempted_stopped"] == len(jobs) + 8
    if lanes == 1:
        assert report["repaired"] % PAGE == 0  # pages finish whole
    assert _halves(seeded, jobs) == []
    assert "Traceback" not in err
    again = subprocess.run([charfix_executable(), *args(seeded, "backfill-portraits", "--yes", "--json")],
                           capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)}, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["repaired"] == report["not_attempted_stopped"]


def test_a_second_sigint_stops_at_once_and_the_next_run_settles_the_log(seeded, tmp_path):
    jobs = _bulk_incidents(seeded, 592)
    before = state(seeded.db_url, seeded.storage)
    log = tmp_path / "audit.jsonl"
    proc = _start(args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log)), tmp_path)
    _once_writing(proc, log)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "again: stopping at once" in err or "stopped by SIGINT" in err  # the first page may have ended first
    assert _halves(seeded, jobs) == []  # the page in flight rolled back whole
    finished = subprocess.run([charfix_executable(), *args(seeded, "backfill-portraits", "--yes", "--audit-log",
                                                           str(log))],
                              capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)}, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert_log_matches(audit.read(log), before, state(seeded.db_url, seeded.storage))


def test_sigterm_over_rest_finishes_the_job_in_flight_and_starts_no_other(seeded, tmp_path, key, server):
    jobs = _bulk_incidents(seeded, 120)
    log = tmp_path / "audit.jsonl"
    env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    proc = _start(["backfill-portraits", "--yes", "--json", "--audit-log", str(log)], tmp_path, env)
    _once_writing(proc, log)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    report = json.loads(out)
    assert report["not_attempted_stopped"] > 0 and "stopped by SIGTERM" in err
    assert report["repaired"] + report["not_attempted_stopped"] == len(jobs) + 8
    assert _halves(seeded, jobs) == []  # the job in flight was finished, not cut



def test_sigterm_during_a_one_job_write_lets_the_job_finish_then_exits_143(seeded, tmp_path, key, server):
    """complete-job over REST, its first write held by the server: the signal lands while the write is
    in flight (its intent is in the log); the job's plan still finishes whole, then the summary."""
    from charfix.demo.cases import INCIDENT_JOB

    server.faults.delay_next(1.5, "/rest/v1/jobs", method="PATCH")
    log = tmp_path / "audit.jsonl"
    env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    proc = _start(["complete-job", str(INCIDENT_JOB), "--yes", "--json", "--audit-log", str(log)], tmp_path, env)
    _once_writing(proc, log)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert json.loads(out)["outcome"] == "repaired"
    assert f"stopped by SIGTERM: job {INCIDENT_JOB}: repaired" in err
    assert [kind for kind, *_ in server.faults.triggered].count("delay") == 1
    lines = audit.read(log)
    assert [line["step"] for line in audit.writes(lines)][0] == "complete_job"
    assert all(line["phase"] != "intent" or line["write"] in {w.get("write") for w in audit.writes(lines)}
               for line in lines)  # every announced write landed and says so

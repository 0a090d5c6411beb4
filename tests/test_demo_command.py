"""The embedded demo itself: `charfix demo`, `--demo`, and ages that stay current."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg

from charfix.demo.cases import INCIDENT_JOB
from charfix.demo.database import prepare


def test_demo_reset_then_list_stuck_shows_the_incident(cli, tmp_path):
    env = {"CHARFIX_DEMO_DIR": str(tmp_path / "demo")}
    reset = cli("demo", "--reset", env=env)
    assert reset.code == 0 and "demo rebuilt" in reset.stdout
    listed = cli("--demo", "list-stuck", "--json", env=env)
    assert listed.code == 0, listed.stderr
    incident = next(row for row in json.loads(listed.stdout) if row["job_id"] == str(INCIDENT_JOB))
    assert incident["state"] == "repairable"
    assert incident["reasons"] == ["job_not_completed", "character_id_missing", "character_created_later"]
    repaired = cli("--demo", "backfill-portraits", "--yes", "--json", env=env)
    assert json.loads(repaired.stdout)["repaired"] == 8
    again = cli("demo", "--reset", env=env)
    assert again.code == 0
    relisted = json.loads(cli("--demo", "list-stuck", "--json", env=env).stdout)
    assert str(INCIDENT_JOB) in {row["job_id"] for row in relisted}


def test_an_old_demo_is_moved_forward_so_its_jobs_keep_their_ages(seeded):
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        before = conn.execute("select created_at from jobs where id = %s", (INCIDENT_JOB,)).fetchone()[0]
        prepare(conn, seeded.storage, now=seeded.now + timedelta(days=3))
        after = conn.execute("select created_at from jobs where id = %s", (INCIDENT_JOB,)).fetchone()[0]
        character = conn.execute("select created_at, updated_at from characters where name = 'Mandy'").fetchone()
    assert after - before == timedelta(days=3)
    assert character[0] == character[1]  # the trigger did not bump updated_at to now

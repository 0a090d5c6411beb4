"""The real console script against a real database: what a support engineer and cron see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.audit import log as audit
from charfix.demo.cases import INCIDENT_JOB, png
from conftest import charfix_executable
from snapshots import duplicate_rows, snapshot


def args(seeded, *rest):
    return ["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), *rest]


def test_help_and_version_need_no_configuration_and_no_heavy_imports(cli):
    result = cli("--help")
    assert result.code == 0
    for command in ("list-stuck", "diagnose", "complete-job", "link-character", "backfill-portraits", "repair", "demo"):
        assert command in result.stdout
    assert cli("--version").stdout.strip().startswith("charfix ")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from charfix.app import app; "
         "print(sorted(m for m in ('supabase', 'psycopg', 'pgserver', 'questionary') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"


def test_every_command_has_help_with_an_example(cli):
    for command in ("list-stuck", "diagnose", "complete-job", "link-character", "backfill-portraits", "repair", "demo"):
        result = cli(command, "--help")
        assert result.code == 0 and "Example" in result.stdout, command


def test_no_configuration_is_one_clear_line_and_exit_3(cli):
    result = cli("list-stuck")
    assert result.code == 3
    assert result.stderr.count("\n") <= 2 and "SUPABASE_DB_URL" in result.stderr and "Traceback" not in result.stderr


def test_list_stuck_shows_the_incident_with_its_reasons(cli, seeded):
    result = cli(*args(seeded, "list-stuck", "--json"))
    assert result.code == 0, result.stderr
    rows = {row["job_id"]: row for row in json.loads(result.stdout)}
    incident = rows[str(INCIDENT_JOB)]
    assert incident["state"] == "repairable"
    assert incident["reasons"] == ["job_not_completed", "character_id_missing", "character_created_later"]
    for key in ("job_id", "user_id", "status", "created_at", "state", "reasons", "character_id", "candidates", "plan"):
        assert key in incident
    shown = {case.name for case in seeded.sample.cases if str(case.job_id) in rows}
    assert "saved" not in shown and "in_progress" not in shown and "failed" not in shown
    assert "no_output" in shown  # failed, but its status still says processing


def test_list_stuck_piped_is_one_plain_line_per_job_and_the_summary_on_stderr(cli, seeded):
    result = cli(*args(seeded, "list-stuck"))
    assert result.code == 0
    lines = result.stdout.splitlines()
    incident = [line for line in lines if line.startswith(str(INCIDENT_JOB))]
    assert len(incident) == 1
    assert incident[0].split("\t")[5] == "job_not_completed,character_id_missing,character_created_later"
    assert all(line.count("\t") == 6 for line in lines)
    assert not set(result.stdout) & set("─│┃━┏┓┗┛┡┩└┘├┤┬┴┼╭╮╰╯")
    assert "portrait job(s) examined" in result.stderr and "repairable" in result.stderr


def test_list_stuck_filters(cli, seeded):
    only = json.loads(cli(*args(seeded, "list-stuck", "--state", "lost", "--json")).stdout)
    assert [row["state"] for row in only] == ["lost"]
    everything = json.loads(cli(*args(seeded, "list-stuck", "--all", "--json")).stdout)
    assert len(everything) == len(seeded.sample.cases)
    limited = json.loads(cli(*args(seeded, "list-stuck", "--all", "--limit", "3", "--json")).stdout)
    assert len(limited) == 3
    recent = json.loads(cli(*args(seeded, "list-stuck", "--all", "--since", "150m", "--json")).stdout)
    assert str(INCIDENT_JOB) in {row["job_id"] for row in recent} and len(recent) < len(everything)


def test_diagnose_tells_the_incident_story(cli, seeded):
    result = cli(*args(seeded, "diagnose", str(INCIDENT_JOB)))
    assert result.code == 0
    for text in ("character 'Mandy' created", "(+25s)", "character_created_later", f"link-character {INCIDENT_JOB}"):
        assert text in result.stdout
    # The suggested command carries the options this run needed, so it runs as printed.
    run = next(line for line in result.stdout.splitlines() if line.startswith("run "))
    assert f"charfix --db-url {seeded.db_url!r}" in run or f"charfix --db-url {seeded.db_url}" in run


@pytest.mark.parametrize("argv, code, message", [
    (["diagnose", "not-a-uuid"], 2, "not a valid job id"),
    (["diagnose", "00000000-0000-0000-0000-000000000000"], 4, "no job with id"),
    (["diagnose", "ffffffff"], 4, "no job id starts with"),
    (["list-stuck", "--since", "yesterday"], 2, "--since"),
    (["list-stuck", "--state", "broken"], 2, "not a state"),
    (["list-stuck", "--stuck-after", "-5m"], 2, "--stuck-after"),
    (["list-stuck", "--user", "'; drop table jobs; --"], 2, "not a valid user id"),
    (["list-stuck", "--limit", "0"], 2, "--limit"),
    (["backfill-portraits", "--concurrency", "99", "--yes"], 2, "--concurrency"),
    # Empty or extreme values are mistakes, never a default (docs/commands.md, "Global options").
    (["--storage-dir", "", "list-stuck"], 2, "--storage-dir: the path is empty"),
    (["--storage-dir", "  ", "list-stuck"], 2, "--storage-dir: the path is empty"),
    (["link-character", str(INCIDENT_JOB), "--character", "", "--yes"], 2, "not a valid character id"),
    (["list-stuck", "--stuck-after", "0s"], 2, "--stuck-after: '0s' is out of range"),
    (["list-stuck", "--stuck-after", "59s"], 2, "--stuck-after"),
    (["diagnose", str(INCIDENT_JOB), "--link-window", "3650d"], 2, "--link-window: '3650d' is out of range"),
    (["backfill-portraits", "--link-window", "8d", "--yes"], 2, "1 minute to 7 days"),
    (["backfill-portraits", "--link-window", "0m", "--yes"], 2, "--link-window"),
    (["backfill-portraits", "--operator", "", "--yes"], 2, "--operator: the name is empty"),
])
def test_bad_input_is_one_line_and_a_documented_exit(cli, seeded, argv, code, message):
    result = cli(*args(seeded, *argv))
    assert result.code == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_writes_without_yes_off_a_terminal_fail_before_writing(cli, seeded):
    before = snapshot(seeded.db_url, seeded.storage)
    chosen = next(c["id"] for c in seeded.sample.characters if c["name"] == "Luna")
    for argv in (["backfill-portraits"], ["complete-job", str(INCIDENT_JOB)],
                 ["link-character", str(seeded.case("ambiguous").job_id), "--character", str(chosen)],
                 ["repair", str(INCIDENT_JOB)]):
        result = cli(*args(seeded, *argv))
        assert result.code == 2 and "--yes" in result.stderr
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_backfill_repairs_everything_repairable_then_finds_nothing(cli, seeded, tmp_path):
    log = tmp_path / "audit.jsonl"
    first = cli(*args(seeded, "backfill-portraits", "--yes", "--json", "--audit-log", str(log)))
    assert first.code == 0, first.stderr
    report = json.loads(first.stdout)
    repairable = [c for c in seeded.sample.cases if c.state == "repairable"]
    assert report["repaired"] == len(repairable) and report["failed"] == 0
    lines = audit.writes(audit.read(log))
    assert len(lines) == sum(len(j["steps"]) for j in report["jobs"])
    second = cli(*args(seeded, "backfill-portraits", "--yes", "--audit-log", str(log)))
    assert second.code == 0 and "Nothing to repair" in second.stdout
    assert len(audit.writes(audit.read(log))) == len(lines)
    after = json.loads(cli(*args(seeded, "list-stuck", "--all", "--json")).stdout)
    states = {row["job_id"]: row["state"] for row in after}
    for case in seeded.sample.cases:
        expected = "saved" if case.state == "repairable" else case.state
        assert states[str(case.job_id)] == expected, case.name


def test_backfill_dry_run_and_max(cli, seeded):
    before = snapshot(seeded.db_url, seeded.storage)
    planned = json.loads(cli(*args(seeded, "backfill-portraits", "--dry-run", "--json")).stdout)
    assert planned["planned"] == len([c for c in seeded.sample.cases if c.state == "repairable"])
    assert snapshot(seeded.db_url, seeded.storage) == before
    capped = json.loads(cli(*args(seeded, "backfill-portraits", "--yes", "--max", "2", "--json")).stdout)
    assert capped["repaired"] == 2 and capped["not_attempted_over_max"] == planned["planned"] - 2


def test_backfill_exit_code_when_a_job_fails(cli, seeded):
    # Make one copy fail: a folder stands where the library object must be written.
    case = seeded.case("copy_failed")
    user = next(j["user_id"] for j in seeded.sample.jobs if j["id"] == case.job_id)
    dax = next(c["id"] for c in seeded.sample.characters if c["name"] == "Dax")
    (seeded.storage / "user-library" / str(user) / f"{case.job_id}_{dax}.png").mkdir(parents=True)
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--json"))
    assert result.code == 1
    report = json.loads(result.stdout)
    failed = [job for job in report["jobs"] if job["outcome"] == "failed"]
    assert [job["job_id"] for job in failed] == [str(case.job_id)] and "cannot copy" in failed[0]["message"]
    assert report["repaired"] == len([c for c in seeded.sample.cases if c.state == "repairable"]) - 1


def test_cross_user_link_is_refused_by_the_cli(cli, seeded):
    from charfix.demo.sample import MALLORY

    theirs = next(c["id"] for c in seeded.sample.characters if c["user_id"] == MALLORY)
    before = snapshot(seeded.db_url, seeded.storage)
    result = cli(*args(seeded, "link-character", str(seeded.case("ambiguous").job_id), "--character", str(theirs), "--yes"))
    assert result.code == 6 and "another user" in result.stderr
    assert snapshot(seeded.db_url, seeded.storage) == before


def _bulk_incidents(seeded, count: int) -> list[uuid.UUID]:
    """`count` more incident-shaped jobs, each with its own user and late-created character."""
    jobs = []
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        for n in range(count):
            user, job = uuid.uuid4(), uuid.uuid4()
            created = seeded.now - timedelta(hours=3, minutes=n % 50)
            key = f"{user}/{job}_{n}.png"
            conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values (%s, %s, 'image', "
                         "'processing', %s, %s)", (job, user, Jsonb({"destination": "character_portrait",
                                                                     "characterName": f"Bulk {n}"}), created))
            conn.execute("insert into workspace_assets (user_id, job_id, asset_type, temp_storage_path, file_size_bytes, "
                         "mime_type, generation_seed, original_prompt, model_used, created_at) values "
                         "(%s, %s, 'image', %s, 70, 'image/png', 42, 'p', 'm', %s)", (user, job, key, created + timedelta(seconds=5)))
            conn.execute("insert into characters (user_id, name, description, created_at) values (%s, %s, 'd', %s)",
                         (user, f"Bulk {n}", created + timedelta(seconds=20)))
            path = seeded.storage / "workspace-temp" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png((n % 255, 10, 10)))
            jobs.append(job)
    return jobs


def test_two_concurrent_backfills_repair_each_job_once(seeded, tmp_path):
    jobs = _bulk_incidents(seeded, 60)
    env = {**os.environ, "NO_COLOR": "1", "HOME": str(tmp_path)}
    procs = [
        subprocess.Popen([charfix_executable(), *args(seeded, "backfill-portraits", "--yes", "--json",
                                                       "--audit-log", str(tmp_path / f"audit{i}.jsonl"))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    expected = len(jobs) + len([c for c in seeded.sample.cases if c.state == "repairable"])
    assert sum(r["repaired"] for r in reports) == expected
    lines = [line for i in range(2) for line in audit.writes(audit.read(tmp_path / f"audit{i}.jsonl"))]
    per_step = {(line["job_id"], line["step"], line["target"]) for line in lines}
    assert len(per_step) == len(lines)  # no write was made twice
    assert len(duplicate_rows(seeded.db_url)) == 1  # only the demo's own duplicates case


@pytest.mark.parametrize("crash_after", [1, 2, 4, 7, 12])
def test_a_run_killed_mid_way_is_finished_by_the_next(cli, seeded, tmp_path, request, crash_after):
    killed = cli(*args(seeded, "backfill-portraits", "--yes"), crash_after=crash_after)
    assert killed.code == 70  # the launcher's abrupt exit (tests/crashing.py), as a kill would leave it
    finished = cli(*args(seeded, "backfill-portraits", "--yes"))
    assert finished.code == 0, finished.stderr
    crashed_state = snapshot(seeded.db_url, seeded.storage)
    fresh = request.getfixturevalue("seeded_twin")
    assert cli(*args(fresh, "backfill-portraits", "--yes")).code == 0
    assert _normalized(crashed_state, seeded) == _normalized(snapshot(fresh.db_url, fresh.storage), fresh)
    assert len(duplicate_rows(seeded.db_url)) == 1  # only the demo's own duplicates case


def _normalized(state: dict, seeded) -> dict:
    """Two seedings differ only in their clock; compare what was repaired, not when."""
    jobs = [(j[0], j[1], j[3]) for j in state["jobs"]]
    objects = [(o[0].rsplit("_", 1)[0] if "workspace-temp" in o[0] else o[0], o[1]) for o in state["objects"]]
    return {"jobs": jobs, "library": state["library"], "characters": state["characters"], "objects": sorted(objects)}


def test_backfill_with_concurrency_repairs_the_same_as_one_worker(cli, seeded, tmp_path):
    _bulk_incidents(seeded, 20)
    log = tmp_path / "audit.jsonl"
    result = cli(*args(seeded, "backfill-portraits", "--yes", "--json", "--concurrency", "3", "--audit-log", str(log)))
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["repaired"] == 20 + len([c for c in seeded.sample.cases if c.state == "repairable"])
    assert len(audit.writes(audit.read(log))) == sum(len(job["steps"]) for job in report["jobs"])
    after = json.loads(cli(*args(seeded, "backfill-portraits", "--dry-run", "--json")).stdout)
    assert after["planned"] == 0

"""Hostile and malformed input through the real console script: one line, a documented exit code,
no traceback, no write, and no secret in anything printed or logged."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.demo.cases import INCIDENT_JOB
from snapshots import snapshot
from test_cli import args

HOSTILE_NAMES = [
    "Robert'); DROP TABLE characters;--",
    'a,b.c(d)"e"\\f',
    "or=(id.eq.1),and=(x)",
    "名前 🌸 Zoë\u200d",
    "x" * 10_000,
]


@pytest.mark.parametrize("argv, code", [
    (["diagnose", "x" * 10_000], 2),
    (["diagnose", ""], 2),
    (["diagnose", "69e0cd17-5b4e-4b8a-a8b2-1333caa61c85; drop table jobs"], 2),
    (["diagnose", "\u202e\u0007"], 2),
    (["complete-job", "%"], 2),
    (["link-character", str(INCIDENT_JOB), "--character", "' or 1=1 --"], 2),
    (["link-character", str(INCIDENT_JOB), "--character", str(uuid.UUID(int=7)), "--yes"], 4),
    (["list-stuck", "--since", "99999999d"], 2),
    (["list-stuck", "--since", "3000-01-01"], 2),
    (["list-stuck", "--limit", "-3"], 2),
    (["backfill-portraits", "--max", "0", "--yes"], 2),
    (["list-stuck", "--user", "名前"], 2),
    (["--storage-dir", "", "backfill-portraits", "--yes"], 2),
    (["backfill-portraits", "--stuck-after", "0s", "--yes"], 2),
    (["backfill-portraits", "--link-window", "3650d", "--yes"], 2),
    (["link-character", str(INCIDENT_JOB), "--character", "", "--yes"], 2),
])
def test_malformed_arguments_give_one_line_and_write_nothing(cli, seeded, argv, code):
    before = snapshot(seeded.db_url, seeded.storage)
    result = cli(*args(seeded, *argv))
    assert result.code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip()
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_hostile_names_and_odd_metadata_are_diagnosed_and_repaired_safely(cli, seeded):
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        for name in HOSTILE_NAMES:
            user, job = uuid.uuid4(), uuid.uuid4()
            created = seeded.now - timedelta(hours=1)
            conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values "
                         "(%s, %s, 'image', 'processing', %s, %s)",
                         (job, user, Jsonb({"destination": "character_portrait", "characterName": name}), created))
            key = f"{user}/{job}_1.png"
            conn.execute("insert into workspace_assets (user_id, job_id, asset_type, temp_storage_path, file_size_bytes, "
                         "mime_type, generation_seed, original_prompt, model_used, created_at) values "
                         "(%s, %s, 'image', %s, 4, 'image/png', 1, %s, 'm', %s)", (user, job, key, name, created))
            conn.execute("insert into characters (user_id, name, description, created_at) values (%s, %s, 'd', %s)",
                         (user, name, created + timedelta(seconds=30)))
            path = seeded.storage / "workspace-temp" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x89PNG")
        for metadata in ([1, 2], "character_portrait", 42, {"destination": ["character_portrait"]}, None):
            conn.execute("insert into jobs (user_id, job_type, status, metadata) values (%s, 'image', 'processing', %s)",
                         (uuid.uuid4(), Jsonb(metadata) if metadata is not None else None))
    listed = cli(*args(seeded, "list-stuck", "--json"))
    assert listed.code == 0, listed.stderr
    hostile = [row for row in json.loads(listed.stdout) if row["character_name"] in HOSTILE_NAMES]
    assert len(hostile) == len(HOSTILE_NAMES) and {row["state"] for row in hostile} == {"repairable"}
    repaired = cli(*args(seeded, "backfill-portraits", "--yes", "--json"))
    assert repaired.code == 0 and json.loads(repaired.stdout)["failed"] == 0
    with psycopg.connect(seeded.db_url) as conn:
        assert conn.execute("select count(*) from characters").fetchone()[0] >= len(HOSTILE_NAMES)
        saved = conn.execute("select roleplay_metadata->>'character_name' from user_library "
                             "where roleplay_metadata->>'character_name' = any(%s)", (HOSTILE_NAMES,)).fetchall()
    assert sorted(r[0] for r in saved) == sorted(HOSTILE_NAMES)


def test_no_secret_appears_in_any_output_or_log(cli, seeded, tmp_path):
    password, key = "pw-Zq81-secret", "service-key-never-print-me-4711"
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        conn.execute(f"create role charfix_tester login superuser password '{password}'")
    dsn = psycopg.conninfo.conninfo_to_dict(seeded.db_url)
    url = f"postgresql://charfix_tester:{password}@/{dsn['dbname']}?host={dsn['host']}"
    env = {"SUPABASE_SERVICE_ROLE_KEY": key, "SUPABASE_URL": "http://127.0.0.1:9"}
    log = tmp_path / "audit.jsonl"
    outputs = []
    for argv in (["list-stuck", "--json"], ["diagnose", str(INCIDENT_JOB)], ["doctor"], ["diagnose", "nope"],
                 ["backfill-portraits", "--yes", "--audit-log", str(log)], ["list-stuck", "--since", "bad"]):
        result = cli("--db-url", url, "--storage-dir", str(seeded.storage), *argv, env=env)
        outputs += [result.stdout, result.stderr]
    broken = cli("--db-url", url.replace("charfix_tester:", "nobody:"), "list-stuck", env=env)
    outputs += [broken.stdout, broken.stderr, log.read_text()]
    assert any(INCIDENT_JOB.hex[:8] in o.replace("-", "") for o in outputs)  # the commands did run
    for text in outputs:
        assert password not in text and key not in text


@pytest.mark.parametrize("url, secret", [
    ("postgres:s3cret-unparsed@db.example", "s3cret-unparsed"),  # libpq quotes the whole string
    ("postgresql://u:pw9@[db.example/postgres", ":pw9@"),  # a password too short to be masked by value
    ("postgresql://u:s3cret-bogus@127.0.0.1:1/db?sslmode=bogus", "s3cret-bogus"),
])
def test_debug_tracebacks_never_show_the_password_and_keep_the_exit_code(cli, tmp_path, url, secret):
    plain = cli("--storage-dir", str(tmp_path), "list-stuck", env={"SUPABASE_DB_URL": url})
    debug = cli("--debug", "--storage-dir", str(tmp_path), "list-stuck", env={"SUPABASE_DB_URL": url})
    assert plain.code == debug.code == 5, (plain.stderr, debug.stderr)
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
    for text in (plain.stdout, plain.stderr, debug.stdout, debug.stderr):
        assert secret not in text


def test_an_internal_error_under_debug_is_redacted_and_exits_70(monkeypatch, tmp_path):
    import io

    import charfix.backends.bootstrap
    from charfix.app import main
    from charfix.ui.environment import Environment

    url = "postgresql://u:s3cret-in-a-bug@db.example/postgres"

    def broken(settings):
        raise RuntimeError(f"a bug that quotes {settings.db_url} and key eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZSJ9.c2ln")

    monkeypatch.setattr(charfix.backends.bootstrap, "build_backends", broken)
    monkeypatch.setenv("SUPABASE_DB_URL", url)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file of the developer's
    for name in ("CHARFIX_CONFIG", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    out, err = io.StringIO(), io.StringIO()
    code = main(["--debug", "--storage-dir", str(tmp_path), "list-stuck"], env=Environment(stdout=out, stderr=err))
    assert code == 70
    assert "Traceback" in err.getvalue() and "RuntimeError" in err.getvalue()
    assert "s3cret-in-a-bug" not in err.getvalue() + out.getvalue()
    assert "eyJyb2xlIjoic2VydmljZSJ9" not in err.getvalue()


def test_a_password_on_the_command_line_warns_and_the_help_steers_away_from_it(cli, tmp_path):
    url = "postgresql://u:hunter2-flag@127.0.0.1:1/db?connect_timeout=2"
    flagged = cli("--db-url", url, "--storage-dir", str(tmp_path), "list-stuck")
    assert flagged.code == 5 and "process list" in flagged.stderr and "SUPABASE_DB_URL" in flagged.stderr
    assert "hunter2-flag" not in flagged.stderr
    quiet = cli("--storage-dir", str(tmp_path), "list-stuck", env={"SUPABASE_DB_URL": url})
    assert quiet.code == 5 and "process list" not in quiet.stderr
    assert "process list" in " ".join(cli("--help").stdout.split())

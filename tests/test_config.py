"""Configuration: flag > environment > config file, and one clear line for anything wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from charfix.config import load_settings
from charfix.demo.cases import INCIDENT_JOB


def write_config(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_flag_beats_environment_beats_file(tmp_path):
    path = write_config(tmp_path, 'db_url = "from-file"\nstorage_dir = "/file/storage"\noperator = "file-op"\n')
    env = {"SUPABASE_DB_URL": "from-env", "CHARFIX_OPERATOR": "env-op"}
    settings = load_settings(flags={"db_url": "from-flag"}, env=env, config_path=path)
    assert (settings.db_url, settings.operator, str(settings.storage_dir)) == ("from-flag", "env-op", "/file/storage")
    assert settings.origins["db_url"] == "flag"
    assert settings.origins["operator"] == "environment (CHARFIX_OPERATOR)"
    assert settings.origins["storage_dir"].startswith("config file")


def test_the_database_password_and_key_are_secrets():
    settings = load_settings(flags={"db_url": "postgresql://postgres:s3cr3t-pw@db.example:5432/postgres"},
                             env={"SUPABASE_SERVICE_ROLE_KEY": "sb-key-123456"}, config_path=None)
    assert set(settings.secrets()) == {"s3cr3t-pw", "sb-key-123456"}


def test_config_file_from_the_config_flag_is_used_by_the_cli(cli, seeded, tmp_path):
    path = write_config(tmp_path, f'db_url = "{seeded.db_url}"\nstorage_dir = "{seeded.storage}"\n')
    result = cli("--config", str(path), "diagnose", str(INCIDENT_JOB), "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)[0]["state"] == "repairable"


def test_bad_toml_is_one_line_and_exit_3(cli, tmp_path):
    path = write_config(tmp_path, 'db_url = "unterminated\n')
    result = cli("--config", str(path), "list-stuck")
    assert result.code == 3 and "not valid TOML" in result.stderr and "Traceback" not in result.stderr


def test_missing_config_file_named_explicitly_is_an_error(cli, tmp_path):
    result = cli("--config", str(tmp_path / "nope.toml"), "list-stuck")
    assert result.code == 3 and "does not exist" in result.stderr


def test_world_readable_key_warns_and_unknown_keys_warn(cli, seeded, tmp_path):
    path = write_config(tmp_path, f'db_url = "{seeded.db_url}"\nstorage_dir = "{seeded.storage}"\n'
                                  'service_role_key = "abcdefgh-key"\ncolour = "blue"\n', mode=0o644)
    result = cli("--config", str(path), "list-stuck", "--json")
    assert result.code == 0
    assert "readable by others" in result.stderr and "chmod 600" in result.stderr
    assert "unknown key(s) colour" in result.stderr
    assert "abcdefgh-key" not in result.stderr + result.stdout


def test_unreachable_database_is_exit_5_without_the_password(cli, tmp_path):
    url = "postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres?connect_timeout=2"
    result = cli("--storage-dir", str(tmp_path), "list-stuck", env={"SUPABASE_DB_URL": url})
    assert result.code == 5 and "cannot connect to the database" in result.stderr
    assert "hunter2-secret" not in result.stderr and result.stderr.count("\n") == 1


def test_missing_storage_dir_is_a_configuration_error(cli, seeded, tmp_path):
    result = cli("--db-url", seeded.db_url, "--storage-dir", str(tmp_path / "missing"), "list-stuck")
    assert result.code == 3 and "does not exist" in result.stderr


def test_unwritable_audit_log_stops_before_any_write(cli, seeded, tmp_path):
    from snapshots import snapshot

    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = snapshot(seeded.db_url, seeded.storage)
    result = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "backfill-portraits", "--yes",
                 "--audit-log", str(blocker / "audit.jsonl"))
    assert result.code == 3 and "audit log" in result.stderr
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_world_readable_database_password_warns(cli, seeded, tmp_path):
    path = write_config(tmp_path, 'db_url = "postgresql://u:pw-in-file-77@127.0.0.1:1/db?connect_timeout=2"\n'
                                  f'storage_dir = "{seeded.storage}"\n', mode=0o644)
    result = cli("--config", str(path), "list-stuck")
    assert result.code == 5
    assert "holds the database password and is readable by others" in result.stderr
    assert "pw-in-file-77" not in result.stderr
    path.chmod(0o600)
    assert "readable by others" not in cli("--config", str(path), "list-stuck").stderr


def test_a_config_file_anyone_can_write_is_refused(cli, seeded, tmp_path):
    path = write_config(tmp_path, f'db_url = "{seeded.db_url}"\nstorage_dir = "{seeded.storage}"\n', mode=0o666)
    result = cli("--config", str(path), "list-stuck")
    assert result.code == 3 and "writable by every user" in result.stderr and result.stdout == ""


def test_a_config_file_of_another_user_is_refused(cli, seeded, tmp_path):
    if os.getuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path = write_config(tmp_path, f'db_url = "{seeded.db_url}"\nstorage_dir = "{seeded.storage}"\n')
    os.chown(path, 4242, -1)
    result = cli("--config", str(path), "list-stuck")
    assert result.code == 3 and "belongs to another user" in result.stderr and result.stdout == ""


def test_an_empty_config_file_anyone_can_write_configures_nothing_and_is_accepted():
    settings = load_settings(flags={}, env={"CHARFIX_CONFIG": os.devnull})  # mode 0666, owned by root
    assert settings.db_url is None and settings.warnings == ()

"""`charfix doctor` through the real console script."""

from __future__ import annotations

import json

import psycopg


def run(cli, seeded, *extra):
    return cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "doctor", "--json", *extra)


def by_name(result) -> dict:
    return {c["check"]: c for c in json.loads(result.stdout)}


def test_doctor_passes_on_a_healthy_database_and_suggests_the_index(cli, seeded):
    result = run(cli, seeded)
    assert result.code == 0, result.stdout
    checks = by_name(result)
    assert checks["table jobs"]["status"] == "ok" and checks["bucket user-library"]["status"] == "ok"
    assert checks["user_library shape"]["detail"].startswith("newer shape")
    assert checks["index on jobs"]["status"] == "warn" and "create index" in checks["index on jobs"]["fix"]


def test_doctor_names_a_missing_column_and_fails(cli, seeded):
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        conn.execute("alter table workspace_assets drop column temp_storage_path")
    result = run(cli, seeded)
    assert result.code == 5
    check = by_name(result)["table workspace_assets"]
    assert check["status"] == "fail" and "temp_storage_path" in check["detail"]


def test_doctor_sees_the_older_library_shape(cli, seeded_old):
    checks = by_name(run(cli, seeded_old))
    assert checks["user_library shape"]["detail"].startswith("older shape")


def test_doctor_after_the_index_is_created_stops_suggesting_it(cli, seeded):
    sql = by_name(run(cli, seeded))["index on jobs"]["fix"].removeprefix("run: ")
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        conn.execute(sql)
    assert "index on jobs" not in by_name(run(cli, seeded))


def test_doctor_suggests_the_index_the_apps_portrait_count_trigger_needs(cli, seeded):
    """Without it, every portrait row a repair inserts makes the app's trigger read the whole library."""
    check = by_name(run(cli, seeded))["index on user_library.character_id"]
    assert check["status"] == "warn" and "portrait_count" in check["detail"]
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        conn.execute(check["fix"].removeprefix("run: "))
        assert conn.execute("select count(*) from pg_indexes where indexname = 'charfix_user_library_character'"
                            ).fetchone()[0] == 1
    assert "index on user_library.character_id" not in by_name(run(cli, seeded))


def test_doctor_does_not_suggest_an_index_on_a_column_the_older_library_lacks(cli, seeded_old):
    assert "index on user_library.character_id" not in by_name(run(cli, seeded_old))


def test_doctor_fails_on_a_missing_bucket(cli, seeded):
    (seeded.storage / "user-library").rename(seeded.storage / "elsewhere")
    result = run(cli, seeded)
    assert result.code == 5 and by_name(result)["bucket user-library"]["status"] == "fail"


def test_doctor_fails_on_a_bucket_folder_that_is_a_symbolic_link(cli, seeded, tmp_path):
    """Every command refuses a linked bucket folder (the local adapter never walks through a link);
    the doctor asks the same adapter, so it fails there too rather than saying ok."""
    (seeded.storage / "user-library").rename(tmp_path / "elsewhere")
    (seeded.storage / "user-library").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    result = run(cli, seeded)
    checks = by_name(result)
    assert result.code == 5 and checks["bucket user-library"]["status"] == "fail"
    assert "symbolic link" in checks["bucket user-library"]["detail"]
    assert checks["bucket workspace-temp"]["status"] == "ok" and checks["table jobs"]["status"] == "ok"


def test_doctor_without_configuration_says_what_to_set(cli):
    result = cli("doctor")
    assert result.code == 5 and "SUPABASE_DB_URL" in result.stdout


def test_doctor_over_supabase_passes_on_the_test_server_and_names_a_missing_column(cli, seeded):
    from tests.supabase_server import SupabaseTestServer, make_service_key

    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        env = {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key}
        result = cli("doctor", "--json", env=env)
        assert result.code == 0, result.stdout
        checks = by_name(result)
        assert checks["Supabase key"]["status"] == "ok"
        assert checks["table characters"]["status"] == "ok"
        assert checks["write permission on jobs"]["status"] == "ok"
        assert checks["bucket workspace-temp"]["status"] == "ok" and checks["bucket user-library"]["status"] == "ok"
        assert key not in result.stdout + result.stderr
        with psycopg.connect(seeded.db_url, autocommit=True) as conn:
            conn.execute("alter table characters drop column seed_locked")
        broken = cli("doctor", "--json", env=env)
        assert broken.code == 5
        assert "seed_locked" in by_name(broken)["table characters"]["detail"]
        anon = cli("doctor", "--json", env={**env, "SUPABASE_SERVICE_ROLE_KEY": make_service_key(role="anon")})
        assert anon.code == 5 and by_name(anon)["Supabase key"]["status"] == "fail"

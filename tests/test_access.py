"""Empty is not evidence: before any diagnosis or write, charfix establishes that its key is a service
key and that both buckets exist (docs/backends.md, "Before the first read"). Real Storage lists a
missing bucket, and any bucket to a key that row-level security leaves blind, as `200 []`; PostgREST
gives such a key zero jobs. Every case runs the real console script against the test server."""

from __future__ import annotations

import json
import shutil

import pytest

from snapshots import snapshot
from tests.supabase_server import SupabaseTestServer, make_opaque_key, make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COMMANDS = [("list-stuck", "--since", "365d"), ("diagnose", "{job}"), ("backfill-portraits", "--yes", "--since", "365d")]
BLIND_KEYS = {
    "anon": lambda: make_service_key(role="anon"),
    "authenticated": lambda: make_service_key(role="authenticated"),
    "publishable": lambda: make_opaque_key("publishable"),
}


def command(args: tuple[str, ...], seeded) -> list[str]:
    job = str(seeded.sample.cases[0].job_id)
    return [a.replace("{job}", job) for a in args]


def assert_refused(result, *words: str) -> None:
    assert result.code == 3, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""


@pytest.fixture
def served(seeded):
    """The seeded tables and storage behind the test server, with a service key."""
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        yield srv, {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key}


@pytest.mark.parametrize("kind", sorted(BLIND_KEYS))
def test_a_key_that_rls_leaves_blind_is_refused_before_any_read(cli, seeded, served, kind):
    srv, env = served
    env = {**env, "SUPABASE_SERVICE_ROLE_KEY": BLIND_KEYS[kind]()}
    before = snapshot(seeded.db_url, seeded.storage)
    srv.reset_counters()
    for args in COMMANDS:
        assert_refused(cli(*command(args, seeded), env=env), "SUPABASE_SERVICE_ROLE_KEY", "not a service key")
    assert srv.requests == []  # refused from the key itself: nothing was asked of either server
    doctor = cli("doctor", "--json", env=env)
    assert doctor.code == 5 and {c["check"]: c for c in json.loads(doctor.stdout)}["Supabase key"]["status"] == "fail"
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_a_key_signed_with_another_secret_is_refused_with_the_servers_words(cli, seeded, served):
    srv, env = served
    env = {**env, "SUPABASE_SERVICE_ROLE_KEY": make_service_key(secret="another-project")}
    before = snapshot(seeded.db_url, seeded.storage)
    for args in COMMANDS:
        result = cli(*command(args, seeded), env=env)
        assert_refused(result, "the key was refused", "PGRST301")
    # Postgres tables and Supabase Storage: the bucket check meets the refusal first.
    mixed = cli(*command(COMMANDS[0], seeded), env={**env, "SUPABASE_DB_URL": seeded.db_url})
    assert_refused(mixed, "Supabase Storage", "AccessDenied", "signature verification failed")
    doctor = json.loads(cli("doctor", "--json", env=env).stdout)
    buckets = {c["check"]: c for c in doctor}["bucket user-library"]
    assert buckets["status"] == "fail" and "AccessDenied" in buckets["detail"]
    assert "signature verification failed" in buckets["detail"] and "status 403" in buckets["detail"]
    assert snapshot(seeded.db_url, seeded.storage) == before


@pytest.mark.parametrize("missing", ["workspace-temp", "user-library"])
def test_a_missing_bucket_is_refused_not_listed_as_empty(cli, seeded, tmp_path, missing):
    shutil.move(str(seeded.storage / missing), str(tmp_path / "aside"))
    key = make_service_key()
    present = tuple(b for b in ("workspace-temp", "user-library") if b != missing)
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key, buckets=present) as srv:
        env = {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key}
        before = snapshot(seeded.db_url, seeded.storage)
        for args in COMMANDS:
            for extra in ({}, {"SUPABASE_DB_URL": seeded.db_url}):
                result = cli(*command(args, seeded), env={**env, **extra})
                assert_refused(result, f"bucket {missing} does not exist", "NoSuchBucket")
        doctor = cli("doctor", "--json", env=env)
        check = {c["check"]: c for c in json.loads(doctor.stdout)}[f"bucket {missing}"]
        assert doctor.code == 5 and check["status"] == "fail"
        assert "NoSuchBucket" in check["detail"] and "Bucket not found" in check["detail"]
        assert "status 404" in check["detail"]
        assert snapshot(seeded.db_url, seeded.storage) == before


@pytest.mark.parametrize("missing", ["workspace-temp", "user-library"])
def test_a_storage_folder_without_a_bucket_folder_is_a_configuration_error(cli, seeded, tmp_path, missing):
    shutil.move(str(seeded.storage / missing), str(tmp_path / "aside"))
    before = snapshot(seeded.db_url, seeded.storage)
    for args in COMMANDS:
        result = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), *command(args, seeded))
        assert_refused(result, f"has no {missing}/ folder")
    doctor = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "doctor", "--json")
    assert doctor.code == 5 and {c["check"]: c for c in json.loads(doctor.stdout)}[f"bucket {missing}"]["status"] == "fail"
    assert snapshot(seeded.db_url, seeded.storage) == before


@pytest.mark.parametrize("linked", ["workspace-temp", "user-library"])
def test_a_bucket_folder_that_is_a_symbolic_link_is_a_configuration_error(cli, seeded, tmp_path, linked):
    """The local adapter never walks through a link under the storage folder (docs/reliability.md), so
    a linked bucket folder would list as empty and every job read lost, exit 0: refused up front."""
    shutil.move(str(seeded.storage / linked), str(tmp_path / "elsewhere"))
    (seeded.storage / linked).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    before = snapshot(seeded.db_url, seeded.storage)
    for args in COMMANDS:
        result = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), *command(args, seeded))
        assert_refused(result, linked, "symbolic link")
    assert snapshot(seeded.db_url, seeded.storage) == before


def test_a_server_that_answers_200_to_everything_is_not_taken_for_storage(cli, seeded):
    """A SUPABASE_URL that reaches some other web server (a catch-all proxy, the app's own site) answers
    the bucket look-up 200 with a page: that is not a bucket, and no listing of it is evidence."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def _page(self):
            body = b"<!doctype html><title>Welcome</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _page

        def log_message(self, *args):
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        env = {"SUPABASE_URL": f"http://127.0.0.1:{site.server_address[1]}", "SUPABASE_SERVICE_ROLE_KEY": make_service_key()}
        before = snapshot(seeded.db_url, seeded.storage)
        for args in COMMANDS:
            result = cli("--db-url", seeded.db_url, *command(args, seeded), env=env)
            assert_refused(result, "workspace-temp")
        assert snapshot(seeded.db_url, seeded.storage) == before
    finally:
        site.shutdown()
        site.server_close()


def test_a_service_key_passes_the_check_with_two_requests(cli, seeded, served):
    srv, env = served
    srv.reset_counters()
    result = cli("list-stuck", "--since", "365d", "--json", env=env)
    assert result.code == 0, result.stderr
    buckets = [r for r in srv.requests if r[1].startswith("/storage/v1/bucket/")]
    assert [r[1] for r in buckets] == ["/storage/v1/bucket/workspace-temp", "/storage/v1/bucket/user-library"]
    secret = cli("list-stuck", "--since", "365d", "--json",
                 env={**env, "SUPABASE_SERVICE_ROLE_KEY": make_opaque_key("secret")})
    assert secret.code == 0 and json.loads(secret.stdout) == json.loads(result.stdout)

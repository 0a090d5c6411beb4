"""Over REST and the Storage API, independent reads go out in parallel (at most `parallel` at once) and
a scan lists each folder once (docs/backends.md, "Requests in parallel"): the diagnoses are those of
one request after the other, errors stay one line, and the server never sees more in flight."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest

from charfix.backends import Backends
from charfix.http import RetryPolicy, connect
from charfix.diagnosis import Rules
from charfix.errors import BackendError
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET
from charfix.queries.scan import collect_facts, scan
from charfix.repository.base import JobQuery
from charfix.repository.supabase import SupabaseRepository
from charfix.storage.supabase import SupabaseStorage
from tests.supabase_server import SupabaseTestServer, make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = RetryPolicy(attempts=2, base_seconds=0.01, cap_seconds=0.02)


@pytest.fixture
def key() -> str:
    return make_service_key()


def over_http(server, key, *, parallel: int, url_budget: int = 12_000) -> tuple[Backends, list[dict]]:
    """Backends over the server, and the Storage listing bodies they send (as sent, in order)."""
    client = connect(server.url, key, retry=FAST, timeout=10, parallel=parallel)
    listings: list[dict] = []

    def record(request) -> None:
        if "/storage/v1/object/list/" in request.url.path:
            listings.append({"bucket": request.url.path.rsplit("/", 1)[1], **json.loads(request.content)})

    client.http.event_hooks["request"].append(record)
    return Backends(repository=SupabaseRepository(client, url_budget=url_budget), storage=SupabaseStorage(client)), listings


def diagnoses(backends, seeded, *, page_size: int) -> list[dict]:
    query = JobQuery(since=seeded.now - timedelta(days=365))
    return [d.to_json() for d in scan(backends, query, Rules(now=seeded.now), page_size=page_size)]


def test_the_parallel_scan_finds_what_the_sequential_one_finds(seeded, key):
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key, latency=0.005) as srv:
        one, _ = over_http(srv, key, parallel=1, url_budget=600)
        srv.reset_counters()
        sequential = diagnoses(one, seeded, page_size=4)
        sequential_requests = srv.request_count
        many, _ = over_http(srv, key, parallel=8, url_budget=600)
        srv.reset_counters()
        parallel = diagnoses(many, seeded, page_size=4)
        assert len(sequential) >= 20 and parallel == sequential
        # The same requests, only at once: parallelism adds none.
        assert srv.request_count == sequential_requests


def test_no_more_requests_in_flight_than_the_pool_allows(seeded, key):
    # The delay keeps each request in flight long enough for the next ones to overlap it.
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key, latency=0.05) as srv:
        backends, listings = over_http(srv, key, parallel=3, url_budget=600)
        srv.reset_counters()
        assert diagnoses(backends, seeded, page_size=100)
        assert 2 <= srv.max_in_flight <= 3
        assert len({(b["bucket"], b["prefix"]) for b in listings}) > 3  # more folders than the pool


def test_a_scan_lists_each_folder_once_across_pages(seeded, key):
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        backends, listings = over_http(srv, key, parallel=4)
        found = diagnoses(backends, seeded, page_size=3)
        pages = -(-len(found) // 3)
        listed = Counter((b["bucket"], b["prefix"], b.get("search", ""), b["offset"]) for b in listings)
        assert pages > 3 and listed and max(listed.values()) == 1
        users = {d["user_id"] for d in found}
        # One listing per user folder and bucket for the whole scan (before: per page, and again for a
        # row's key outside the job's prefix).
        folders = {(bucket, prefix) for bucket, prefix, search, _ in listed if not search}
        assert {(WORKSPACE_BUCKET, u) for u in users} <= folders and {(LIBRARY_BUCKET, u) for u in users} <= folders


def test_a_repair_reads_its_folders_afresh(seeded, key):
    """collect_facts is the repair's read inside its lock: an object copied since an earlier read is seen."""
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        backends, listings = over_http(srv, key, parallel=4)
        jobs = backends.repository.jobs_by_id([seeded.sample.cases[0].job_id])
        before = collect_facts(backends, jobs)[0]
        key_ = f"{jobs[0].user_id}/{jobs[0].id}_planted.png"
        backends.storage.write(LIBRARY_BUCKET, key_, b"png", content_type="image/png")
        after = collect_facts(backends, jobs)[0]
        assert key_ not in {o.key for o in before.library_objects}
        assert key_ in {o.key for o in after.library_objects}


def test_a_failing_listing_among_parallel_ones_is_one_line(seeded, key):
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        backends, _ = over_http(srv, key, parallel=8)
        srv.faults.fail_next(n=50, status=500, path_contains="/storage/v1/object/list/user-library",
                             body={"statusCode": "500", "code": "InternalError", "error": "Internal",
                                   "message": f"disk trouble near {key}"})
        with pytest.raises(BackendError) as caught:
            diagnoses(backends, seeded, page_size=500)
        message = caught.value.message
        assert message.startswith("Supabase Storage: bucket user-library, listing ") and "HTTP 500 InternalError" in message
        assert "\n" not in message and key not in message


def test_the_cli_reports_a_failing_parallel_listing_in_one_line_with_its_exit_code(cli, seeded, key):
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        srv.faults.fail_next(n=200, status=500, path_contains="/storage/v1/object/list/workspace-temp")
        result = cli("list-stuck", "--json", env={"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key})
    assert result.code == 5 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bucket workspace-temp, listing" in lines[0] and "HTTP 500" in lines[0]


def test_a_few_keys_in_a_heavy_folder_cost_one_narrowed_listing(seeded, key):
    """The checks around a copy look up one key, or a stem with its extensions: a listing narrowed
    to their common start, not the whole folder (over 1,000 files here: two pages)."""
    user = "0b7a4c2e-2c1d-4a53-9c2e-2b1f3f0c9d10"
    folder = seeded.storage / LIBRARY_BUCKET / user
    folder.mkdir(parents=True)
    for n in range(1200):
        (folder / f"{n:08d}-other.png").write_bytes(b"x")
    (folder / "job_char.png").write_bytes(b"png")
    (folder / "JOB_CHAR.webp").write_bytes(b"webp")  # the same start in another case: not one of ours
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        backends, listings = over_http(srv, key, parallel=4)
        found = backends.storage.stat(LIBRARY_BUCKET, [f"{user}/job_char.{ext}" for ext in ("png", "jpg", "webp")])
        assert [(o.key, o.size) for o in found] == [(f"{user}/job_char.png", 3)]
        assert [(b["prefix"], b.get("search")) for b in listings] == [(user, "job_char.")]
        listings.clear()
        whole = backends.storage.stat(LIBRARY_BUCKET, [f"{user}/00000001-other.png", f"{user}/00000002-other.png",
                                                       f"{user}/job_char.png"])
        assert len(whole) == 3 and [b.get("search") for b in listings] == [None, None]  # no common start: the folder

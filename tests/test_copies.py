"""An object at the library key is the copy only when it is the whole source (docs/repairs.md): a
truncated or stale object is copied over again, on both storage adapters. Objects charfix uploads
keep the source's content type and carry `Cache-Control: max-age=3600`, as the app's do."""

from __future__ import annotations

import json

import psycopg
import pytest

from charfix.diagnosis import Rules, diagnose
from charfix.errors import BackendError
from charfix.http import RetryPolicy, connect
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET, Action
from charfix.repair.steps import StepContext, apply_step
from charfix.repair.unit import Unit
from charfix.repository.postgres import PostgresRepository
from charfix.repository.supabase import SupabaseRepository
from charfix.backends import Backends
from charfix.queries.scan import collect_facts
from charfix.storage.local import LocalStorage
from charfix.storage.supabase import SupabaseStorage
from tests.supabase_server import SupabaseTestServer, make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = RetryPolicy(attempts=2, base_seconds=0.01, cap_seconds=0.05)
STALE = {
    "truncated": lambda data: data[: len(data) // 2],
    "same size, other bytes": lambda data: bytes(b ^ 0xFF for b in data),
}


@pytest.fixture
def server(seeded):
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        yield srv, key


def copy_failed(seeded):
    """The demo's copy_failed job: its temp object, and the library key the copy is due at."""
    job_id = seeded.case("copy_failed").job_id
    with psycopg.connect(seeded.db_url) as conn:
        user, character = conn.execute("select user_id, metadata->>'character_id' from jobs where id = %s",
                                       (job_id,)).fetchone()
    temp = next((seeded.storage / WORKSPACE_BUCKET / str(user)).glob(f"{job_id}_*.png"))
    return job_id, temp, seeded.storage / LIBRARY_BUCKET / str(user) / f"{job_id}_{character}.png"


def plant(path, data: bytes) -> None:
    """What a broken copy (the app's, or anybody's) leaves at the library key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize("stale", sorted(STALE))
@pytest.mark.parametrize("adapter", ["local", "supabase"])
def test_a_stale_object_at_the_library_key_is_copied_again_by_the_step(seeded, server, adapter, stale):
    """The copy step itself compares: local hashes both files, Supabase compares the eTags' MD5."""
    srv, key = server
    if adapter == "local":
        backends = Backends(repository=PostgresRepository.connect(seeded.db_url), storage=LocalStorage(seeded.storage))
    else:
        client = connect(srv.url, key, retry=FAST, timeout=5)
        backends = Backends(repository=SupabaseRepository(client), storage=SupabaseStorage(client))
    job_id, temp, library = copy_failed(seeded)
    facts = collect_facts(backends, backends.repository.jobs_by_id([job_id]))[0]
    diagnosis = diagnose(facts, Rules(now=seeded.now))
    copy = next(step for step in diagnosis.plan if step.action == Action.COPY_OBJECT)
    assert copy.params["destination"] == f"{LIBRARY_BUCKET}/{library.relative_to(seeded.storage / LIBRARY_BUCKET)}"
    plant(library, STALE[stale](temp.read_bytes()))  # appears between the diagnosis and the step
    apply_step(StepContext(backends=backends, facts=facts, diagnosis=diagnosis, unit=Unit(backends)), copy)
    assert library.read_bytes() == temp.read_bytes()
    before = library.stat().st_mtime_ns
    apply_step(StepContext(backends=backends, facts=facts, diagnosis=diagnosis, unit=Unit(backends)), copy)
    assert library.stat().st_mtime_ns == before  # a whole copy is left alone
    backends.repository.close()


@pytest.mark.parametrize("stale,adapter", [("truncated", "local"), ("truncated", "supabase"),
                                           ("same size, other bytes", "supabase")])
def test_a_repair_does_not_take_a_stale_object_as_the_copy(cli, seeded, server, stale, adapter):
    """The diagnosis compares the object at the key with the temp object (size; and MD5 where the
    listing gives it, that is over Supabase Storage) before it plans the row onto it."""
    srv, key = server
    job_id, temp, library = copy_failed(seeded)
    plant(library, STALE[stale](temp.read_bytes()))
    env = {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key} if adapter == "supabase" else {}
    where = [] if adapter == "supabase" else ["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage)]
    shown = cli(*where, "diagnose", str(job_id), "--json", env=env)
    assert shown.code == 0, shown.stderr
    plan = json.loads(shown.stdout)[0]["plan"]
    assert [s["action"] for s in plan][:2] == ["copy_object", "insert_library_row"]
    result = cli(*where, "repair", str(job_id), "--yes", env=env)
    assert result.code == 0, result.stderr
    assert library.read_bytes() == temp.read_bytes()
    with psycopg.connect(seeded.db_url) as conn:
        size = conn.execute("select file_size_bytes from user_library where storage_path = %s",
                            (str(library.relative_to(seeded.storage / LIBRARY_BUCKET)),)).fetchone()
    assert size == (len(temp.read_bytes()),)


def test_uploads_keep_the_content_type_and_carry_max_age_3600(seeded, server):
    srv, key = server
    client = connect(srv.url, key, retry=FAST, timeout=5)
    storage = SupabaseStorage(client)
    storage.write(LIBRARY_BUCKET, "u/fetched.webp", b"WEBP-bytes", content_type="image/webp")
    info = client.client.storage.from_(LIBRARY_BUCKET).info("u/fetched.webp")
    assert (info["content_type"], info["cache_control"]) == ("image/webp", "max-age=3600")
    # A server that refuses the copy (older Storage: 409 Duplicate on upsert): download, then upload.
    temp = client.client.storage.from_(WORKSPACE_BUCKET)
    temp.upload("u/source.jpg", b"JPEG-bytes", {"content-type": "image/jpeg"})
    srv.faults.fail_next(status=400, path_contains="/object/copy",
                         body={"statusCode": "409", "error": "Duplicate", "message": "The resource already exists"})
    copied = storage.copy(WORKSPACE_BUCKET, "u/source.jpg", LIBRARY_BUCKET, "u/copied.jpg")
    assert copied.size == len(b"JPEG-bytes") and srv.faults.pending == 0
    info = client.client.storage.from_(LIBRARY_BUCKET).info("u/copied.jpg")
    assert (info["content_type"], info["cache_control"]) == ("image/jpeg", "max-age=3600")
    client.close()


def test_listings_carry_the_md5_of_an_md5_etag_only(seeded, server):
    srv, key = server
    client = connect(srv.url, key, retry=FAST, timeout=5)
    storage = SupabaseStorage(client)
    storage.write(LIBRARY_BUCKET, "u/a.png", b"abc", content_type="image/png")
    [listed] = storage.stat(LIBRARY_BUCKET, ["u/a.png"])
    assert listed.content_md5 == "900150983cd24fb0d6963f7d28e17f72"
    from charfix.storage.supabase import _md5

    assert _md5('"1b2cf535f27731c974343645a3985328-2"') is None  # S3 multipart: no content hash
    assert _md5('"18f3c2a1b-1f4"') is None  # the file backend's mtime eTag
    client.close()


def test_a_copy_into_a_missing_bucket_fails_without_downloading_the_source(seeded, server):
    srv, key = server
    client = connect(srv.url, key, retry=FAST, timeout=5)
    storage = SupabaseStorage(client)
    client.client.storage.from_(WORKSPACE_BUCKET).upload("u/source.png", b"PNG", {"content-type": "image/png"})
    srv.reset_counters()
    # The refusal comes as HTTP 400; the line names the real status from the body (docs/backends.md).
    with pytest.raises(BackendError, match=r"HTTP 400 InvalidRequest \(status 404\): The related resource does not exist"):
        storage.copy(WORKSPACE_BUCKET, "u/source.png", "no-such-bucket", "u/copy.png")
    assert [r[:2] for r in srv.requests] == [("POST", "/storage/v1/object/copy")]
    client.close()

"""The storage catalogue in the database (storage/catalogue.py): with a database URL beside Supabase
Storage, the scan reads storage.objects, as Supabase keeps it, instead of listing every user folder.
The test server keeps those rows in the same database as the real server does (objects_table.py)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from charfix.backends import Backends
from charfix.backends.bootstrap import build_backends
from charfix.http import RetryPolicy, connect
from charfix.config import Settings
from charfix.diagnosis import Rules
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET
from charfix.queries.scan import scan
from charfix.repository.base import JobQuery
from charfix.repository.postgres import PostgresRepository
from charfix.storage.catalogue import DatabaseCatalogue
from charfix.storage.local import LocalStorage
from charfix.storage.supabase import SupabaseStorage
from test_backends import to_ms
from test_cli import _bulk_incidents
from tests.supabase_server import SupabaseTestServer, make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = RetryPolicy(attempts=2, base_seconds=0.01, cap_seconds=0.05)


@pytest.fixture
def key() -> str:
    return make_service_key()


def over_supabase(seeded, srv, key, *, catalogue: bool) -> Backends:
    """Postgres + Supabase Storage, reading objects from storage.objects or from the API's listings."""
    settings = Settings(db_url=seeded.db_url, supabase_url=srv.url, service_role_key=key)
    built = build_backends(settings)
    return built if catalogue else Backends(repository=built.repository, storage=built.storage)


def diagnoses(backends: Backends, seeded, *, page_size: int = 2000) -> list[dict]:
    rules = Rules(now=seeded.now)
    found = [d.to_json() for d in scan(backends, JobQuery(since=seeded.now - timedelta(days=365)), rules,
                                       page_size=page_size)]
    backends.repository.close()
    return found


def storage_requests(srv) -> int:
    return len([r for r in srv.requests if r[1].startswith("/storage/v1/")])


# -- the test server keeps storage.objects ----------------------------------------------------------


def catalogued(seeded, bucket: str) -> dict[str, dict]:
    with seeded.connect() as conn:
        rows = conn.execute("select name, metadata from storage.objects where bucket_id = %s", (bucket,)).fetchall()
    return dict(rows)


def test_the_server_keeps_a_row_per_object_in_storage_objects(seeded, key):
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        on_disk = sorted(str(p.relative_to(seeded.storage / WORKSPACE_BUCKET))
                         for p in (seeded.storage / WORKSPACE_BUCKET).rglob("*") if p.is_file())
        assert sorted(catalogued(seeded, WORKSPACE_BUCKET)) == on_disk and on_disk
        client = connect(srv.url, key, retry=FAST, timeout=5)
        storage = SupabaseStorage(client)
        storage.write(LIBRARY_BUCKET, "u/new.webp", b"RIFF....WEBP", content_type="image/webp")
        row = catalogued(seeded, LIBRARY_BUCKET)["u/new.webp"]
        assert (row["size"], row["mimetype"], row["cacheControl"]) == (12, "image/webp", "max-age=3600")
        assert row["eTag"] == '"' + hashlib.md5(b"RIFF....WEBP").hexdigest() + '"'
        storage.copy(LIBRARY_BUCKET, "u/new.webp", WORKSPACE_BUCKET, "u/copied.webp")
        assert catalogued(seeded, WORKSPACE_BUCKET)["u/copied.webp"]["mimetype"] == "image/webp"
        client.client.storage.from_(WORKSPACE_BUCKET).move("u/copied.webp", "u/moved.webp")
        client.client.storage.from_(LIBRARY_BUCKET).remove(["u/new.webp"])
        assert "u/copied.webp" not in catalogued(seeded, WORKSPACE_BUCKET)
        assert "u/moved.webp" in catalogued(seeded, WORKSPACE_BUCKET)
        assert "u/new.webp" not in catalogued(seeded, LIBRARY_BUCKET)
        srv.lose_bytes(WORKSPACE_BUCKET, "u/moved.webp")  # the row stays: listed, its bytes gone
        assert "u/moved.webp" in catalogued(seeded, WORKSPACE_BUCKET)
        client.close()


# -- which catalogue the scan reads -----------------------------------------------------------------


def test_bootstrap_reads_the_catalogue_from_the_database_only_beside_supabase_storage(seeded, key):
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        mixed = build_backends(Settings(db_url=seeded.db_url, supabase_url=srv.url, service_role_key=key))
        folder = build_backends(Settings(db_url=seeded.db_url, storage_dir=seeded.storage))
        rest = build_backends(Settings(supabase_url=srv.url, service_role_key=key))
    assert isinstance(mixed.catalogue, DatabaseCatalogue) and mixed.listings is mixed.catalogue
    assert folder.catalogue is None and folder.listings is folder.storage
    assert rest.catalogue is None and isinstance(rest.listings, SupabaseStorage)
    assert [b.catalogue_description for b in (mixed, folder, rest)] == [
        "storage.objects through the database", "the local folder", "Storage API listings"]
    for built in (mixed, folder, rest):
        built.repository.close()


def test_a_role_that_row_level_security_leaves_blind_keeps_the_api_listings(seeded, key):
    """An empty catalogue would read every portrait as lost: a role RLS hides rows from never uses it."""
    blind = f"charfix_blind_{uuid.uuid4().hex[:8]}"  # roles are the cluster's, not the database's
    with seeded.connect() as conn:
        conn.execute(f"create role {blind} login password 'blind' nobypassrls")
        conn.execute(f"grant usage on schema public to {blind}")
        conn.execute(f"grant select on all tables in schema public to {blind}")
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key):
        with seeded.connect() as conn:
            conn.execute(f"grant usage on schema storage to {blind}")
            conn.execute(f"grant select on storage.objects, storage.buckets to {blind}")
        blind_url = psycopg.conninfo.make_conninfo(seeded.db_url, user=blind, password="blind")
        repository = PostgresRepository.connect(blind_url)
        catalogue, why = DatabaseCatalogue.open(repository)
        repository.close()
    assert catalogue is None and "row-level security" in why


def test_a_database_without_storage_tables_keeps_the_api_listings(db_url):
    repository = PostgresRepository.connect(db_url)
    catalogue, why = DatabaseCatalogue.open(repository)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("create schema storage")
        conn.execute("create table storage.objects (bucket_id text, name text, metadata jsonb, updated_at timestamptz)")
    half, half_why = DatabaseCatalogue.open(repository)
    repository.close()
    assert catalogue is None and "no storage.objects table" in why
    assert half is None and "no storage.buckets table" in half_why


def test_doctor_says_which_catalogue_is_in_use(cli, seeded, key):
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        env = {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key}
        mixed = cli("doctor", "--json", env={**env, "SUPABASE_DB_URL": seeded.db_url})
        rest = cli("doctor", "--json", env=env)
    folder = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "doctor", "--json")

    def line(result) -> str:
        return {c["check"]: c for c in json.loads(result.stdout)}["storage catalogue"]["detail"]

    assert line(mixed).startswith("storage.objects through the database")
    assert line(rest).startswith("Storage API listings")
    assert line(folder).startswith("the local folder")


# -- the same answers, fewer requests -----------------------------------------------------------


@pytest.mark.parametrize("shape", ["seeded", "seeded_old"])
def test_the_scan_is_the_same_with_and_without_the_catalogue(shape, request, key):
    seeded = request.getfixturevalue(shape)
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        listed = diagnoses(over_supabase(seeded, srv, key, catalogue=False), seeded)
        srv.reset_counters()
        catalogued_ = diagnoses(over_supabase(seeded, srv, key, catalogue=True), seeded)
        assert storage_requests(srv) == 2  # the two buckets looked up before the first read; no listing
    folder = diagnoses(Backends(repository=PostgresRepository.connect(seeded.db_url),
                                storage=LocalStorage(seeded.storage)), seeded)
    assert len(folder) >= 20
    assert catalogued_ == folder  # the rows carry the files' times to the microsecond, as the folder does
    assert to_ms(listed) == to_ms(catalogued_)


def test_storage_requests_per_page_stay_constant_as_users_grow(seeded, key):
    """Counted at the server: with the catalogue no page lists anything, however many users it holds;
    through the API listings the same scan grows with the users."""
    counts = {}
    for added in (0, 30):
        _bulk_incidents(seeded, added)
        with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
            for catalogue in (True, False):
                backends = over_supabase(seeded, srv, key, catalogue=catalogue)
                srv.reset_counters()
                found = diagnoses(backends, seeded, page_size=10)
                pages = -(-len(found) // 10)
                counts[(added, catalogue)] = (len(found), pages, storage_requests(srv))
    small, large = counts[(0, True)], counts[(30, True)]
    assert large[0] == small[0] + 30 and large[1] > small[1]
    assert small[2] == large[2] == 0  # no Storage request at all during the scan (target: <= 3 per page)
    assert counts[(30, False)][2] > counts[(0, False)][2] + 30  # what the catalogue saves


# -- hostile rows -----------------------------------------------------------------------------


def a_saved_job(seeded):
    """The demo's saved job: its user, job id and library key."""
    case = seeded.case("saved")
    with seeded.connect() as conn:
        user, = conn.execute("select user_id from jobs where id = %s", (case.job_id,)).fetchone()
        path, = conn.execute("select storage_path from user_library where user_id = %s and storage_path like %s",
                             (user, f"{user}/{case.job_id}_%")).fetchone()
    return user, case.job_id, path


def upload(srv, key, names: list[str]) -> None:
    client = connect(srv.url, key, retry=FAST, timeout=5)
    for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
        for name in names:
            client.client.storage.from_(bucket).upload(name, b"\x89PNG planted", {"content-type": "image/png"})
    client.close()


def test_hostile_names_uploaded_through_storage_read_the_same_as_their_listings(seeded, key):
    """Names anyone can upload beside a job's objects: odd characters, a deeper folder, another
    user's folder with the job's id, the bucket's top level. Both catalogues agree, and agree with
    the same files read as a local folder."""
    user, job, _ = a_saved_job(seeded)
    names = [f"{user}/{job}_x (1),+?&=@;:$!'*.png", f"{user}/{job}_deeper/evil.png", f"{user}/{job}_ .png",
             f"{uuid.uuid4()}/{job}_{uuid.uuid4()}.png", f"{job}_top.png"]
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        upload(srv, key, names)
        listed = diagnoses(over_supabase(seeded, srv, key, catalogue=False), seeded)
        from_rows = diagnoses(over_supabase(seeded, srv, key, catalogue=True), seeded)
    folder = diagnoses(Backends(repository=PostgresRepository.connect(seeded.db_url),
                                storage=LocalStorage(seeded.storage)), seeded)
    assert to_ms(listed) == to_ms(from_rows) and from_rows == folder and len(folder) >= 20
    timeline = next(d for d in from_rows if d["job_id"] == str(job))["timeline"]
    assert any("_x (1),+?&=@;:$!'*.png" in e["what"] for e in timeline)  # an odd name is still the job's object


def test_an_object_in_another_case_of_the_users_folder_is_not_the_jobs(seeded, key):
    """A Storage listing matches the folder case-insensitively, and names the entry under the folder
    asked for: a key that does not exist. storage.objects is read exactly, as a local folder is."""
    user, job, _ = a_saved_job(seeded)
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        upload(srv, key, [f"{str(user).upper()}/{job}_upper.png"])
        from_rows = diagnoses(over_supabase(seeded, srv, key, catalogue=True), seeded)
    folder = diagnoses(Backends(repository=PostgresRepository.connect(seeded.db_url),
                                storage=LocalStorage(seeded.storage)), seeded)
    assert from_rows == folder
    assert not any("_upper.png" in e["what"] for d in from_rows for e in d["timeline"])


def test_rows_no_storage_server_would_write_are_evidence_of_nothing(seeded, key):
    """Rows planted in storage.objects directly (an older server, a restore): names outside the trust
    boundary, metadata of any shape, older versions and delete markers. None is read as an object,
    and none costs more than its own row."""
    user, job, path = a_saved_job(seeded)
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        before = diagnoses(over_supabase(seeded, srv, key, catalogue=True), seeded)
        hostile = [f"{user}/{job}_%2e%2e.png", f"{user}/{job}_#x.png", f"{user}/{job}_[1].png", f"{user}/{job}_ü.png",
                   f"{user}/{job}_\x07bell.png", f"{user}/{job}_a\\..\\b.png", f"{user}/{job}_x/../../y.png",
                   f"{user}//{job}_y.png", f"{user}/{job}_" + "x" * 2000 + ".png"]
        odd_metadata = [None, {"size": "lots", "eTag": 7}, {"size": -5}, {"size": 1e300}, {"contentLength": "12"},
                        {"size": [1], "lastModified": "yesterday"}, {"size": True}]
        with seeded.connect() as conn:
            conn.execute("alter table storage.objects add column archived_at timestamptz, "
                         "add column is_delete_marker boolean not null default false")
            for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
                for name in hostile:
                    conn.execute("insert into storage.objects (bucket_id, name, metadata) values (%s, %s, %s)",
                                 (bucket, name, Jsonb({"size": 3})))
                for n, metadata in enumerate(odd_metadata):
                    conn.execute("insert into storage.objects (bucket_id, name, metadata, updated_at) "
                                 "values (%s, %s, %s, 'infinity')",
                                 (bucket, f"{user}/{uuid.uuid4()}_{n}.png", None if metadata is None else Jsonb(metadata)))
            # Another version of the saved job's library object, and a delete marker for a key beside it.
            conn.execute("alter table storage.objects drop constraint if exists objects_pkey")
            conn.execute("drop index storage.bucketid_objname")
            conn.execute("insert into storage.objects (bucket_id, name, metadata, archived_at) values (%s, %s, %s, now())",
                         (LIBRARY_BUCKET, path, Jsonb({"size": 1})))
            conn.execute("insert into storage.objects (bucket_id, name, metadata, is_delete_marker) values (%s, %s, %s, true)",
                         (LIBRARY_BUCKET, f"{user}/{job}_marker.png", Jsonb({"size": 1})))
        after = diagnoses(over_supabase(seeded, srv, key, catalogue=True), seeded)
    assert after == before


def test_odd_metadata_reads_as_a_listing_reads_it(seeded, key):
    """metadata.size, else contentLength, else 0; an eTag only when it is an MD5; a time only when it is one."""
    user = uuid.uuid4()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        cases = {"a": None, "b": {"size": "lots"}, "c": {"contentLength": "12"}, "d": {"size": -5},
                 "e": {"size": 7, "eTag": '"0123456789abcdef0123456789ABCDEF"'}, "f": {"size": 7, "eTag": '"abc-2"'}}
        with seeded.connect() as conn:
            for name, metadata in cases.items():
                conn.execute("insert into storage.objects (bucket_id, name, metadata, updated_at) "
                             "values (%s, %s, %s, 'infinity')",
                             (LIBRARY_BUCKET, f"{user}/{name}_x.png", None if metadata is None else Jsonb(metadata)))
        backends = over_supabase(seeded, srv, key, catalogue=True)
        found = {o.key.split("/")[1][0]: o for o in backends.listings.list_prefixes(
            LIBRARY_BUCKET, [f"{user}/{n}_" for n in cases])}
        stat = backends.listings.stat(LIBRARY_BUCKET, [f"{user}/e_x.png", f"{user}/zz.png", "../x", ""])
        backends.repository.close()
    assert {n: o.size for n, o in found.items()} == {"a": 0, "b": 0, "c": 12, "d": 0, "e": 7, "f": 7}
    assert found["e"].content_md5 == "0123456789abcdef0123456789abcdef" and found["f"].content_md5 is None
    assert all(o.updated_at is None for o in found.values())
    assert [o.key for o in stat] == [f"{user}/e_x.png"]

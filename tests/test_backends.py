"""Both backends on the same data: the Postgres adapter (with a storage folder) and the Supabase
adapters (REST + Storage, through the strict local test server over the same database and folder).
One contract suite runs against both; scans, repairs and the CLI must agree."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta

import pytest

from charfix.audit import log as audit
from charfix.diagnosis import Rules
from charfix.errors import BackendError, ChangedError, ConfigError
from charfix.diagnosis.facts import normalized_name
from charfix.http import RetryPolicy, connect, in_list, quoted
from charfix.diagnosis import portrait
from charfix.diagnosis.portrait import NewLibraryItem
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET
from charfix.repository.base import JobQuery, Page
from charfix.repository.postgres import PostgresRepository
from charfix.repository.supabase import SupabaseRepository
from charfix.backends import Backends
from charfix.queries.scan import scan
from charfix.queries.selection import Selection
from charfix.repair.operations import backfill
from charfix.storage.local import LocalStorage
from charfix.storage.supabase import SupabaseStorage
from snapshots import duplicate_rows, snapshot
from test_cli import _bulk_incidents, _normalized
from tests.supabase_server import SupabaseTestServer, make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05)
ODD_NAMES = ["Zoë “Z” O'Brien, (the 2nd)", 'Quote "Q" \\ back\\slash', "a,b.c:d (e)", "emoji 🌸 name", "in.(x,y)"]


def supabase_backends(srv, key, **options) -> Backends:
    client = connect(srv.url, key, retry=FAST, timeout=5)
    return Backends(repository=SupabaseRepository(client, **options), storage=SupabaseStorage(client))


def postgres_backends(seeded) -> Backends:
    return Backends(repository=PostgresRepository.connect(seeded.db_url), storage=LocalStorage(seeded.storage))


@pytest.fixture(params=["postgres", "supabase"])
def backends(request, seeded, key):
    if request.param == "postgres":
        built = postgres_backends(seeded)
    else:
        srv = request.getfixturevalue("server")
        built = supabase_backends(srv, key)
    yield built
    built.repository.close()


def since(seeded):
    return seeded.now - timedelta(days=365)


def rows(seeded, statement: str, *params) -> list:
    with seeded.connect() as conn:
        return conn.execute(statement, params).fetchall()


def to_ms(value):
    """Storage reports times in milliseconds, the local folder in microseconds: compare at the
    millisecond, and the timeline as a set (events in one millisecond may then swap places)."""
    if isinstance(value, dict) and "timeline" in value:
        value = {**value, "timeline": sorted(value["timeline"], key=lambda e: (to_ms(e["at"]), e["what"]))}
    if isinstance(value, str):
        return re.sub(r"(\.\d{3})\d{3}", r"\1", value)
    if isinstance(value, list):
        return [to_ms(v) for v in value]
    if isinstance(value, dict):
        return {k: to_ms(v) for k, v in value.items()}
    return value


# -- contract: reads -----------------------------------------------------------------------------


def test_schema_reads_the_live_columns(backends, seeded):
    assert "character_id" in backends.repository.schema.readable("user_library")
    assert backends.repository.schema.has("jobs", "started_at")
    assert not backends.repository.schema.has("jobs", "result_url")


def test_portrait_jobs_pages_by_keyset_in_order(backends, seeded):
    expected = [r[0] for r in rows(
        seeded, "select id from jobs where created_at >= %s and (metadata->>'destination' = 'character_portrait' "
        "or metadata->>'source' = 'character_portrait') order by created_at, id", since(seeded))]
    query = JobQuery(since=since(seeded))
    assert [j.id for j in backends.repository.portrait_jobs(query, after=None, limit=500)] == expected
    paged, after = [], None
    while True:
        page = backends.repository.portrait_jobs(query, after=after, limit=3)
        paged += [j.id for j in page]
        if len(page) < 3:
            break
        after = Page(created_at=page[-1].created_at, id=page[-1].id)
    assert paged == expected and len(expected) > 6
    user = seeded.case("incident").job_id
    owner = rows(seeded, "select user_id from jobs where id = %s", user)[0][0]
    mine = backends.repository.portrait_jobs(JobQuery(since=since(seeded), user_id=owner), after=None, limit=500)
    assert mine and {j.user_id for j in mine} == {owner}


def test_jobs_by_id_and_prefixes(backends, seeded):
    ids = [seeded.case(n).job_id for n in ("incident", "odd_name", "copy_failed")]
    found = backends.repository.jobs_by_id([*ids, uuid.uuid4()])
    assert {j.id for j in found} == set(ids)
    assert [j.created_at for j in found] == sorted(j.created_at for j in found)
    text = str(ids[0])
    for prefix in (text[:4], text[:8], text[:10], text):
        expected = [r[0] for r in rows(seeded, "select id from jobs where id::text like %s order by id limit 5", prefix + "%")]
        assert backends.repository.job_ids_starting(prefix, limit=5) == expected
    assert backends.repository.job_ids_starting("zz", limit=5) == []
    assert backends.repository.job_ids_starting(text[:8] + "x", limit=5) == []


def test_ids_sharing_prefixes_and_user_prefixes(backends, seeded):
    # Two planted jobs share the incident's first 8 hex digits; one other user's id shares a user's.
    incident = seeded.case("incident").job_id
    owner = rows(seeded, "select user_id from jobs where id = %s", incident)[0][0]
    twins = [uuid.UUID(str(incident)[:8] + f"-0000-4000-8000-00000000000{n}") for n in (1, 2)]
    stranger = uuid.UUID(str(owner)[:8] + "-ffff-4fff-8fff-ffffffffffff")
    with seeded.connect() as conn:
        for twin, user in zip(twins, (owner, stranger), strict=True):
            conn.execute("insert into jobs (id, user_id, job_type, status, metadata) values (%s, %s, 'image', 'queued', "
                         "'{}')", (twin, user))
    repo = backends.repository
    assert set(repo.ids_sharing_prefixes("id", [incident])) == {incident, *twins}
    assert set(repo.ids_sharing_prefixes("user_id", [owner])) == {owner, stranger}
    assert repo.user_ids_starting(str(owner), limit=2) == [owner]
    assert set(repo.user_ids_starting(str(owner)[:8], limit=2)) == {owner, stranger}
    assert repo.user_ids_starting("ffffffff-ffff", limit=2) == []


def test_assets_library_rows_and_characters_for_a_page(backends, seeded):
    repo = backends.repository
    jobs = repo.portrait_jobs(JobQuery(since=since(seeded)), after=None, limit=500)
    assets = repo.assets_for([j.id for j in jobs])
    assert {a.id for a in assets} == {r[0] for r in rows(
        seeded, "select id from workspace_assets where job_id = any(%s)", [j.id for j in jobs])}
    items = repo.library_items_for(jobs, assets)
    expected = rows(seeded, "select id from user_library where user_id = any(%s) and (left(storage_path, 74) = any(%s) "
                    "or roleplay_metadata->>'job_id' = any(%s) or split_part(storage_path, '.', 1) = any(%s) "
                    "or generation_metadata->>'job_id' = any(%s))",
                    list({j.user_id for j in jobs}), [f"{j.user_id}/{j.id}_" for j in jobs],
                    [str(j.id) for j in jobs], [f"{a.user_id}/{a.id}" for a in assets], [str(j.id) for j in jobs])
    assert {i.id for i in items} == {r[0] for r in expected} and len(items) >= 5
    names = [(j.user_id, j.metadata.get("characterName") or j.metadata.get("character_name"))
             for j in jobs if isinstance(j.metadata, dict)]
    names = [(u, n) for u, n in names if isinstance(n, str)]
    some_id = rows(seeded, "select id from characters order by created_at limit 1")[0][0]
    found = repo.characters_for([some_id], names)
    everyone = rows(seeded, "select id, user_id, name from characters")
    wanted = {(u, normalized_name(n)) for u, n in names}
    assert {c.id for c in found} == {i for i, u, n in everyone if i == some_id or (u, normalized_name(n)) in wanted}
    assert repo.characters_for([], []) == [] and repo.library_items_for([], []) == []


def test_long_filters_are_split_and_give_the_same_rows(server, seeded, key):
    wide, narrow = supabase_backends(server, key), supabase_backends(server, key, url_budget=400)
    jobs = wide.repository.portrait_jobs(JobQuery(since=since(seeded)), after=None, limit=500)
    for repo in (wide.repository, narrow.repository):
        repo.caller.count = 0
    results = []
    for repo in (wide.repository, narrow.repository):
        assets = repo.assets_for([j.id for j in jobs])
        results.append(({a.id for a in assets}, {i.id for i in repo.library_items_for(jobs, assets)},
                        {c.id for c in repo.characters_for([], [(j.user_id, "Mandy") for j in jobs])}))
    assert results[0] == results[1] and all(results[0])
    assert wide.repository.queries == 3 and narrow.repository.queries > 6


def test_jobs_naming_matches_exact_names_with_quotes(backends, seeded):
    case = seeded.case("odd_name")
    read = backends.repository.jobs_by_id([case.job_id])[0]
    name = read.metadata["characterName"]
    window = timedelta(hours=1)
    found = backends.repository.jobs_naming([(read.user_id, name), (read.user_id, "a,b (c)")],
                                            since=read.created_at - window, until=read.created_at + window)
    assert [j.id for j in found] == [read.id]
    assert backends.repository.jobs_naming([(read.user_id, name.upper())], since=read.created_at - window,
                                           until=read.created_at + window) == []


# -- contract: writes ----------------------------------------------------------------------------


def job(backends, seeded, name):
    return backends.repository.jobs_by_id([seeded.case(name).job_id])[0]


def test_complete_job_and_mark_failed_are_conditional(backends, seeded):
    repo = backends.repository
    read = job(backends, seeded, "incident")
    assert read.status == "processing"
    with repo.locked(read.id) as got:
        assert got is True
        done = repo.complete_job(read, completed_at=seeded.now)
    assert (done.status, done.completed_at, done.error_message) == ("completed", seeded.now, None)
    with pytest.raises(ChangedError):
        repo.complete_job(read, completed_at=seeded.now)
    with pytest.raises(ChangedError):
        repo.mark_failed(read, message="never produced", at=seeded.now)
    other = job(backends, seeded, "odd_name")
    failed = repo.mark_failed(other, message="never produced, 'quoted'", at=seeded.now)
    assert rows(seeded, "select status, error_message from jobs where id = %s", other.id) == [
        ("failed", "never produced, 'quoted'")]
    assert failed.status == "failed"


def test_link_character_merges_into_the_metadata(backends, seeded):
    repo = backends.repository
    read = job(backends, seeded, "incident")
    ids = [r[0] for r in rows(seeded, "select id from characters where user_id = %s order by created_at", read.user_id)]
    character, second = repo.characters_for(ids[:2], [])
    linked = repo.link_character(read, character)
    assert linked.metadata == {**read.metadata, "character_id": str(character.id)}
    # Someone else changes the metadata after charfix read it: their key must survive.
    with seeded.connect() as conn:
        conn.execute("update jobs set metadata = metadata || '{\"note\": \"x\"}' where id = %s", (read.id,))
    fresh = repo.jobs_by_id([read.id])[0]
    with seeded.connect() as conn:
        conn.execute("update jobs set metadata = metadata || '{\"other\": 1}' where id = %s", (read.id,))
    try:
        after = repo.link_character(fresh, second)
        assert after.metadata.get("other") == 1  # Postgres merges in place under its row lock
    except ChangedError:
        assert isinstance(repo, SupabaseRepository)  # REST compares the metadata as read
    stored = rows(seeded, "select metadata from jobs where id = %s", read.id)[0][0]
    assert stored["other"] == 1 and stored["note"] == "x"


def test_link_character_writes_nothing_when_the_character_was_renamed(backends, seeded):
    repo = backends.repository
    read = job(backends, seeded, "incident")
    ids = [r[0] for r in rows(seeded, "select id from characters where user_id = %s", read.user_id)]
    character = repo.characters_for(ids[:1], [])[0]
    with seeded.connect() as conn:
        conn.execute("update characters set name = name || ' (renamed)' where id = %s", (character.id,))
    with pytest.raises(ChangedError):
        repo.link_character(read, character)
    assert rows(seeded, "select metadata from jobs where id = %s", read.id)[0][0] == read.metadata


def test_library_rows_insert_look_up_and_upgrade(backends, seeded):
    repo = backends.repository
    user = rows(seeded, "select user_id from jobs where id = %s", seeded.case("incident").job_id)[0][0]
    path = f"{user}/odd, (name) \"q\".png"
    item = NewLibraryItem(user_id=user, asset_type="image", storage_path=path, file_size_bytes=7, mime_type="image/png",
                          original_prompt="p", model_used="m", generation_seed=2**40, tags=["general"],
                          content_category="general", roleplay_metadata={"job_id": "j"}, output_type="portrait",
                          generation_metadata={"repaired_by": "charfix"})
    inserted = repo.insert_library_item(item)
    assert (inserted.storage_path, inserted.generation_seed, inserted.output_type) == (path, 2**40, "portrait")
    assert [r.id for r in repo.library_items_at(user, path)] == [inserted.id]
    assert repo.library_items_at(user, path + "x") == []
    character_id = rows(seeded, "select id from characters where user_id = %s limit 1", user)[0][0]
    character = repo.characters_for([character_id], [])[0]
    read = job(backends, seeded, "incident")
    upgrade = portrait.upgrade(inserted, read, character)
    upgraded = repo.upgrade_library_item(upgrade)
    assert upgraded.tags == ["character", "general", "portrait"] and upgraded.content_category == "character"
    assert upgraded.roleplay_metadata == {"type": "character_portrait", "character_id": str(character_id),
                                          "character_name": character.name, "job_id": str(read.id)}
    assert upgraded.character_id == character_id
    assert upgraded.generation_metadata == {"repaired_by": "charfix", "job_id": str(read.id)}
    if isinstance(repo, SupabaseRepository):  # read-modify-write: the stale copy no longer matches
        with pytest.raises(ChangedError):
            repo.upgrade_library_item(upgrade)


def test_update_character_image_is_conditional_on_the_image_as_read(backends, seeded):
    repo = backends.repository
    user = rows(seeded, "select user_id from jobs where id = %s", seeded.case("odd_name").job_id)[0][0]
    found = [c for c in repo.characters_for([], [(user, ODD_NAMES[0])]) if c.name == ODD_NAMES[0]]
    assert len(found) == 1
    character = found[0]
    odd_url = "user-library/a,b (c) \"d\" \\e.png"
    first = repo.update_character_image(character, image_url=odd_url, seed=7)
    assert (first.image_url, first.reference_image_url, first.seed_locked) == (odd_url, odd_url, 7)
    with pytest.raises(ChangedError):
        repo.update_character_image(character, image_url="user-library/x.png", seed=None)
    second = repo.update_character_image(first, image_url="user-library/y.png", seed=None)
    assert second.seed_locked == 7 and second.image_url == "user-library/y.png"
    with seeded.connect() as conn:
        conn.execute("update characters set image_url = null where id = %s", (character.id,))
    empty = repo.characters_for([character.id], [])[0]
    assert repo.update_character_image(empty, image_url="user-library/z.png", seed=None).image_url == "user-library/z.png"


def test_odd_names_round_trip_through_filters(backends, seeded):
    user = uuid.uuid4()
    with seeded.connect() as conn:
        for name in ODD_NAMES:
            conn.execute("insert into characters (user_id, name, description, created_at) values (%s, %s, 'd', now())",
                         (user, name))
    for name in ODD_NAMES:
        found = backends.repository.characters_for([], [(user, name)])
        assert [c.name for c in found] == [name], name
    spaced = backends.repository.characters_for([], [(user, "EMOJI  🌸name")])
    assert [c.name for c in spaced] == ["emoji 🌸 name"]


def test_quoted_values_round_trip_through_the_strict_server(server, seeded, key):
    """characters_for matches names in Python, so quote the names themselves into `in` and `or`."""
    repo = supabase_backends(server, key).repository
    user = uuid.uuid4()
    with seeded.connect() as conn:
        for name in [*ODD_NAMES, "a", "b", "the 2nd"]:
            conn.execute("insert into characters (user_id, name, description, created_at) values (%s, %s, 'd', now())",
                         (user, name))
    listed = repo._select("characters").filter("user_id", "eq", str(user)).filter("name", "in", in_list(ODD_NAMES))
    assert sorted(r["name"] for r in repo._json("characters", listed)) == sorted(ODD_NAMES)
    tree = repo._select("characters").filter("user_id", "eq", str(user))
    tree.or_(",".join(f"name.eq.{quoted(name)}" for name in ODD_NAMES))
    assert sorted(r["name"] for r in repo._json("characters", tree)) == sorted(ODD_NAMES)


# -- contract: storage ---------------------------------------------------------------------------


def test_storage_lists_stats_reads_writes_and_copies(backends, seeded):
    storage = backends.storage
    case = seeded.case("copy_failed")
    user = rows(seeded, "select user_id from jobs where id = %s", case.job_id)[0][0]
    prefix = f"{user}/{case.job_id}_"
    temp = storage.list_prefixes(WORKSPACE_BUCKET, [prefix, f"{user}/nothing-here_"])
    on_disk = sorted(p.name for p in (seeded.storage / WORKSPACE_BUCKET / str(user)).iterdir()
                     if p.name.startswith(f"{case.job_id}_"))
    assert sorted(o.key.split("/")[1] for o in temp) == on_disk and on_disk
    source = next(o for o in temp if o.key.endswith(".png"))
    assert storage.stat(WORKSPACE_BUCKET, [source.key, f"{user}/missing.png"]) == [
        o for o in storage.stat(WORKSPACE_BUCKET, [source.key])]
    data = storage.read(WORKSPACE_BUCKET, source.key)
    assert len(data) == source.size
    key = f"{user}/{case.job_id}_copy.png"
    copied = storage.copy(WORKSPACE_BUCKET, source.key, LIBRARY_BUCKET, key)
    assert (copied.key, copied.size) == (key, source.size)
    storage.write(LIBRARY_BUCKET, key, b"other bytes", content_type="image/png")
    assert storage.read(LIBRARY_BUCKET, key) == b"other bytes"
    again = storage.copy(WORKSPACE_BUCKET, source.key, LIBRARY_BUCKET, key)  # overwrites the existing object
    assert again.size == source.size and storage.read(LIBRARY_BUCKET, key) == data
    with pytest.raises(BackendError):
        storage.copy(WORKSPACE_BUCKET, f"{user}/gone.png", LIBRARY_BUCKET, f"{user}/gone.png")
    with pytest.raises(BackendError):
        storage.read(LIBRARY_BUCKET, f"{user}/gone.png")


def test_copy_falls_back_to_download_and_upload_when_refused(server, seeded, key):
    storage = supabase_backends(server, key).storage
    case = seeded.case("copy_failed")
    source = next(o for o in storage.list_prefixes(WORKSPACE_BUCKET, [_prefix(seeded, case)]) if o.key.endswith(".png"))
    server.faults.fail_next(status=400, path_contains="/object/copy",
                            body={"statusCode": "400", "code": "InvalidRequest", "error": "x", "message": "no"})
    copied = storage.copy(WORKSPACE_BUCKET, source.key, LIBRARY_BUCKET, source.key)
    assert copied.size == source.size
    assert (seeded.storage / LIBRARY_BUCKET / source.key).read_bytes() == (seeded.storage / WORKSPACE_BUCKET / source.key).read_bytes()
    calls = [(m, p) for m, p, _ in server.requests]
    refused = calls.index(("POST", "/storage/v1/object/copy"))
    assert ("GET", f"/storage/v1/object/authenticated/{WORKSPACE_BUCKET}/{source.key}") in calls[refused:]
    assert ("POST", f"/storage/v1/object/{LIBRARY_BUCKET}/{source.key}") in calls[refused:]


def _prefix(seeded, case) -> str:
    user = rows(seeded, "select user_id from jobs where id = %s", case.job_id)[0][0]
    return f"{user}/{case.job_id}_"


# -- agreement -----------------------------------------------------------------------------------


def diagnoses(backends, seeded, *, page_size=500) -> list[dict]:
    query = JobQuery(since=since(seeded))
    return [d.to_json() for d in scan(backends, query, Rules(now=seeded.now), page_size=page_size)]


@pytest.mark.parametrize("shape", ["seeded", "seeded_old"])
def test_scan_gives_the_same_diagnoses_through_both_backends(shape, request, key):
    seeded = request.getfixturevalue(shape)
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        rest = supabase_backends(srv, key)
        over_rest = diagnoses(rest, seeded)
        tables_only = diagnoses(Backends(rest.repository, LocalStorage(seeded.storage)), seeded)
    direct = diagnoses(postgres_backends(seeded), seeded)
    assert len(direct) >= 20
    assert tables_only == direct  # the REST repository alone: identical to the microsecond
    assert to_ms(over_rest) == to_ms(direct)  # Storage lists times in milliseconds
    states = {d["job_id"]: d["state"] for d in direct}
    assert {states[str(c.job_id)] for c in seeded.sample.cases if str(c.job_id) in states} >= {"repairable", "saved"}


def test_backfill_repairs_the_same_through_both_backends(seeded, seeded_twin, key, tmp_path):
    selection = Selection(query=JobQuery(since=since(seeded)), rules=Rules(now=seeded.now))
    direct = backfill(postgres_backends(seeded), selection)
    with SupabaseTestServer(dsn=seeded_twin.db_url, storage_root=seeded_twin.storage, service_key=key) as srv:
        twin_selection = Selection(query=JobQuery(since=since(seeded_twin)), rules=Rules(now=seeded_twin.now))
        over_rest = backfill(supabase_backends(srv, key), twin_selection)
        again = backfill(supabase_backends(srv, key), twin_selection)
    assert len(direct.repaired) == len(over_rest.repaired) >= 8 and not over_rest.failed
    assert sorted(r.job_id for r in direct.repaired) == sorted(r.job_id for r in over_rest.repaired)
    assert _normalized(snapshot(seeded.db_url, seeded.storage), seeded) == _normalized(
        snapshot(seeded_twin.db_url, seeded_twin.storage), seeded_twin)
    assert not again.repaired and duplicate_rows(seeded_twin.db_url) == duplicate_rows(seeded.db_url)


def test_requests_per_page_are_a_small_constant(server, seeded, key):
    """The same batching as the Postgres adapter: one request where it sends one statement."""
    backends = supabase_backends(server, key)
    for size in (5, 500):
        server.reset_counters()
        found = diagnoses(backends, seeded, page_size=size)
        rest = len([r for r in server.requests if r[1].startswith("/rest/v1/")])
        direct = postgres_backends(seeded)
        before = direct.repository.queries
        assert diagnoses(direct, seeded, page_size=size) and direct.repository.queries > before
        statements = direct.repository.queries - before
        pages = -(-len(found) // size)
        # One more jobs request ends a scan whose last page is short (a max_rows cap looks the same).
        assert rest == statements + (0 if len(found) % size == 0 else 1)
        assert rest <= 5 * pages + 2
        users = len({r[0] for r in rows(seeded, "select user_id from jobs")})
        assert server.request_count - rest <= pages * (2 * users + 1)  # listings per folder and bucket


# -- resilience and secrets ----------------------------------------------------------------------


def test_a_503_and_a_dropped_connection_are_retried(server, seeded, key):
    backends = supabase_backends(server, key)
    expected = diagnoses(backends, seeded)
    server.faults.fail_next(status=503, path_contains="/rest/v1/jobs")
    server.faults.drop_next(path_contains="/rest/v1/user_library")
    server.faults.fail_next(status=429, path_contains="/storage/v1/object/list")
    server.faults.drop_next(path_contains="/storage/v1/object/list")
    assert diagnoses(backends, seeded) == expected
    assert server.faults.pending == 0 and len(server.faults.triggered) == 4


def test_writes_survive_a_dropped_connection_without_duplicates(server, seeded, key):
    backends = supabase_backends(server, key)
    read = job(backends, seeded, "incident")
    server.faults.drop_next(path_contains="/rest/v1/jobs", method="PATCH")
    assert backends.repository.complete_job(read, completed_at=seeded.now).status == "completed"
    user = read.user_id
    item = NewLibraryItem(user_id=user, asset_type="image", storage_path=f"{user}/dropped.png", file_size_bytes=1,
                          mime_type="image/png", original_prompt="p", model_used="m", tags=["character"],
                          content_category="character", roleplay_metadata={"job_id": str(read.id)})
    server.faults.drop_next(path_contains="/rest/v1/user_library", method="POST")
    backends.repository.insert_library_item(item)
    assert len(rows(seeded, "select id from user_library where storage_path = %s", item.storage_path)) == 1
    assert server.faults.pending == 0


def test_a_backfill_over_rest_through_a_timeout_and_a_failing_write_loses_nothing(server, seeded, key, tmp_path):
    """A read that times out is retried; a write answered 500 on every try fails that job only. Its
    writes that landed before it are in the audit log, and the next run finishes it."""
    from charfix.audit.log import AuditLog

    client = connect(server.url, key, retry=FAST, timeout=0.5)
    backends = Backends(repository=SupabaseRepository(client), storage=SupabaseStorage(client))
    selection = Selection(query=JobQuery(since=since(seeded)), rules=Rules(now=seeded.now))
    planned = backfill(backends, selection, dry_run=True).planned
    duplicates = duplicate_rows(seeded.db_url)  # the demo seeds one on purpose
    server.faults.delay_next(1.5, "/rest/v1/user_library", method="GET")
    server.faults.fail_next(n=FAST.attempts, status=500, path_contains="/rest/v1/characters", method="PATCH")
    log = tmp_path / "audit.jsonl"
    report = backfill(backends, selection, audit=AuditLog(log, "t", "test").open())
    assert [kind for kind, *_ in server.faults.triggered].count("delay") == 1
    assert len(report.failed) == 1 and len(report.repaired) == len(planned) - 1
    failed = report.failed[0]
    assert "characters" in failed.message and "HTTP 500" in failed.message
    lines = audit.writes(audit.read(log))
    landed = [line["step"] for line in lines if line["job_id"] == str(failed.job_id)]
    assert landed and "update_character_image" not in landed  # what happened before the failure is logged
    rerun = backfill(backends, selection)
    assert [r.job_id for r in rerun.repaired] == [failed.job_id] and not rerun.failed
    assert [r.steps[-1].action.value for r in rerun.repaired] == ["update_character_image"]
    assert duplicate_rows(seeded.db_url) == duplicates


def test_an_audit_log_failing_over_rest_with_workers_stops_the_jobs_not_yet_started(server, seeded, key, tmp_path,
                                                                                       monkeypatch):
    from charfix.audit.log import AuditError, AuditLog

    extra = _bulk_incidents(seeded, 30)
    selection = Selection(query=JobQuery(since=since(seeded)), rules=Rules(now=seeded.now))
    original, lines = AuditLog._append, {"n": 0}

    def full_disk_after_a_few_writes(self, batch, **kwargs):
        lines["n"] += len(batch)
        if lines["n"] > 6:
            raise AuditError("cannot write the audit log: No space left on device")
        return original(self, batch, **kwargs)

    monkeypatch.setattr(AuditLog, "_append", full_disk_after_a_few_writes)
    with pytest.raises(AuditError):
        backfill(supabase_backends(server, key), selection, concurrency=2,
                 open_worker=lambda: supabase_backends(server, key),
                 audit=AuditLog(tmp_path / "audit.jsonl", "t", "test").open())
    touched = rows(seeded, "select count(*) from jobs where id = any(%s) and status = 'completed'", extra)[0][0]
    assert touched <= 4  # the jobs in flight when the log failed; the queued ones were never started


def test_a_persistent_500_is_one_clear_line_naming_the_table(server, seeded, key):
    backends = supabase_backends(server, key)
    server.faults.fail_next(n=10, status=500, path_contains="/rest/v1/workspace_assets",
                            body={"code": "XX000", "message": f"internal trouble near {key}", "details": None, "hint": None})
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        diagnoses(backends, seeded)
    message = caught.value.message
    assert "workspace_assets" in message and "HTTP 500" in message and "XX000" in message
    assert "\n" not in message and key not in message and key not in str(caught.value)
    assert server.faults.pending == 10 - FAST.attempts and time.monotonic() - started < 5


def test_other_4xx_are_not_retried(server, seeded, key):
    backends = supabase_backends(server, key)
    server.faults.fail_next(n=3, status=400, path_contains="/rest/v1/jobs",
                            body={"code": "PGRST100", "message": "failed to parse", "details": None, "hint": None})
    with pytest.raises(BackendError, match="table jobs: HTTP 400 PGRST100"):
        diagnoses(backends, seeded)
    assert server.faults.pending == 2


def test_the_key_never_appears_in_errors(server, seeded, key):
    wrong = make_service_key(secret="another-secret")
    with pytest.raises(ConfigError) as caught:  # the key itself is refused: a configuration error
        SupabaseRepository(connect(server.url, wrong, retry=FAST))
    assert "401" in caught.value.message and wrong not in caught.value.message
    storage = supabase_backends(server, key).storage
    server.faults.fail_next(n=10, status=502, path_contains="/storage/v1/", body={"message": key, "error": key})
    with pytest.raises(BackendError) as caught:
        storage.list_prefixes(WORKSPACE_BUCKET, ["a/b_"])
    assert "bucket workspace-temp" in caught.value.message and "502" in caught.value.message
    assert key not in caught.value.message and key not in repr(caught.value)


# -- the console script ----------------------------------------------------------------------------


def test_cli_over_supabase_lists_the_same_as_over_postgres(cli, seeded, server, key):
    direct = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "list-stuck", "--json")
    env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    over_rest = cli("list-stuck", "--json", env=env)
    mixed = cli("list-stuck", "--json", env={**env, "SUPABASE_DB_URL": seeded.db_url})
    for result in (direct, over_rest, mixed):
        assert result.code == 0, result.stderr
        assert key not in result.stdout + result.stderr
    listed = json.loads(direct.stdout)
    assert listed and to_ms(json.loads(over_rest.stdout)) == to_ms(listed) == to_ms(json.loads(mixed.stdout))
    assert any(r[0] == "GET" and r[1] == "/rest/v1/jobs" for r in server.requests)


def test_cli_reports_an_unreachable_project_in_one_line(cli, key):
    result = cli("list-stuck", env={"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": key})
    assert result.code == 5 and "Traceback" not in result.stderr
    assert "no answer" in result.stderr and key not in result.stderr


# -- a job changed by someone else between diagnosis and write -------------------------------------

CHANGES = {
    "character_renamed": "update characters set name = name || ' (renamed)' where id = %(character)s",
    "character_deleted": "delete from characters where id = %(character)s",
    "image_replaced": "update characters set image_url = 'user-library/chosen-meanwhile.png' where id = %(character)s",
    # The application's own auto-save lands at last, with a row charfix did not read.
    "row_inserted": "insert into user_library (user_id, asset_type, storage_path, file_size_bytes, mime_type, "
                    "original_prompt, model_used, tags, content_category, roleplay_metadata) values (%(user)s, "
                    "'image', %(path)s, 1, 'image/png', 'p', 'm', '{character,portrait}', 'character', "
                    "jsonb_build_object('type', 'character_portrait', 'job_id', %(job)s::text))",
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_job_changed_between_diagnosis_and_write_is_diagnosed_again_not_overwritten(
        backends, seeded, monkeypatch, change):
    from charfix.repair import job as repair
    from charfix.diagnosis.portrait import library_row_id
    from charfix.models import Action

    read = job(backends, seeded, "incident")
    plan = {s.action: s.params for s in repair.diagnose(
        repair.read_facts(backends, read.id, repair.RepairOptions(rules=Rules(now=seeded.now)))[0],
        Rules(now=seeded.now)).plan}
    character = plan[Action.INSERT_LIBRARY_ROW]["character_id"]
    values = {"character": character, "user": read.user_id, "job": str(read.id),
              "path": plan[Action.INSERT_LIBRARY_ROW]["storage_path"]}
    before = rows(seeded, "select image_url from characters where id = %s", character)[0][0]
    original, done = repair.apply_step, []

    def someone_else_first(context, step):
        if not done:  # after charfix diagnosed the job, before its first write
            done.append(step.action)
            with seeded.connect() as conn:
                conn.execute(CHANGES[change], values)
        return original(context, step)

    monkeypatch.setattr(repair, "apply_step", someone_else_first)
    result = repair.repair_job(backends, read.id, repair.RepairOptions(rules=Rules(now=seeded.now)), None)
    assert done and result.outcome == repair.Outcome.CHANGED, result
    assert "diagnosed again" in result.message
    image = rows(seeded, "select image_url, name from characters where id = %s", character)
    if change == "character_deleted":
        assert image == []
    elif change == "image_replaced":
        assert image[0][0] == "user-library/chosen-meanwhile.png"
    else:
        assert image[0][0] == before and (change != "character_renamed" or image[0][1].endswith("(renamed)"))
    job_rows = rows(seeded, "select id from user_library where roleplay_metadata->>'job_id' = %s", str(read.id))
    assert len(job_rows) <= 1
    if change != "image_replaced":  # over REST that change is met after the row was inserted
        assert (library_row_id(read.id),) not in job_rows

"""The SQL prefilter (queries/prefilter.py): over Postgres, jobs the rows and the objects prove saved are
counted without being read whole, the objects read from storage.objects (the catalogue in the
database) or from the storage's own listing (a local folder). Every job it skips must be one the full
path diagnoses `saved` with no reason (a property over generated states, on the real Postgres, for
both); the counts of list-stuck, its summary and backfill stay exact."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import uuid
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from charfix.backends import Backends
from charfix.backends.bootstrap import build_backends
from charfix.config import Settings
from charfix.diagnosis import Rules, diagnose
from charfix.models import State
from charfix.queries.prefilter import Prefilter
from charfix.queries.scan import UNREAD_NOTE, collect_facts, scan
from charfix.queries.selection import Selection, Tally, selected
from charfix.queries.summary import summarize
from charfix.repair.operations import backfill
from charfix.repository.base import JobQuery
from charfix.repository.postgres import PostgresRepository
from charfix.storage.catalogue import DatabaseCatalogue
from charfix.storage.local import LocalStorage
from conftest import OLD_SHAPE_TEMPLATE, TEMPLATE, _fresh
from test_cli import _bulk_incidents
from tests.supabase_server import SupabaseTestServer, make_service_key
from tests.supabase_server.objects_table import SCHEMA

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES = 300 if os.environ.get("CHARFIX_HEAVY") == "1" else 60
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
JOB_AT = NOW - timedelta(hours=3)
USER, OTHER = uuid.UUID(int=1), uuid.UUID(int=2)
JOB, OTHER_JOB = uuid.UUID(int=10), uuid.UUID(int=11)
CHAR, OTHER_CHAR = uuid.UUID(int=20), uuid.UUID(int=21)
ASSET = uuid.UUID(int=30)
PREFIX = f"{USER}/{JOB}_"
KEY = f"{PREFIX}{CHAR}.png"
TEMP = f"{PREFIX}1700000000000.png"
INFINITY = "infinity"


def saved_state() -> dict[str, Any]:
    """A portrait saved the way auto-save leaves it: the state the prefilter is meant to skip."""
    return {
        "job": {"status": "completed", "created_at": JOB_AT, "completed_at": JOB_AT + timedelta(seconds=10),
                "metadata": {"destination": "character_portrait", "character_id": str(CHAR), "prompt": "p"}},
        "characters": [{"id": CHAR, "user_id": USER, "name": "Mandy", "image_url": f"user-library/{KEY}",
                        "created_at": JOB_AT - timedelta(days=1)},
                       {"id": OTHER_CHAR, "user_id": USER, "name": "Luna", "image_url": None,
                        "created_at": JOB_AT - timedelta(days=2)}],
        "rows": [row(KEY)],
        "assets": [{"id": ASSET, "user_id": USER, "path": TEMP, "created_at": JOB_AT + timedelta(seconds=5)}],
        "objects": [("user-library", KEY, "current"), ("workspace-temp", TEMP, "current")],
    }


def row(path: str, **changes: Any) -> dict[str, Any]:
    found = {"id": uuid.uuid4(), "user_id": USER, "path": path, "tags": ["character", "portrait"],
             "category": "character", "character_id": CHAR, "created_at": JOB_AT + timedelta(seconds=20),
             "roleplay": {"type": "character_portrait", "character_id": str(CHAR), "job_id": str(JOB)},
             "generation": {"job_id": str(JOB)}}
    return {**found, **changes}


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"x": value}
    return value


def meta(s: dict[str, Any], **changes: Any) -> None:
    if isinstance(s["job"]["metadata"], dict):  # once an array, it stays one
        s["job"]["metadata"] = {**s["job"]["metadata"], **changes}


def without(s: dict[str, Any], key: str) -> None:
    if isinstance(s["job"]["metadata"], dict):
        s["job"]["metadata"] = {k: v for k, v in s["job"]["metadata"].items() if k != key}


def first_row(s: dict[str, Any], **changes: Any) -> None:
    if s["rows"]:
        s["rows"][0] = {**s["rows"][0], **changes}


def first_asset(s: dict[str, Any], **changes: Any) -> None:
    if s["assets"]:
        s["assets"][0] = {**s["assets"][0], **changes}


def character(s: dict[str, Any], **changes: Any) -> None:
    s["characters"][0] = {**s["characters"][0], **changes}


def objects(s: dict[str, Any], *extra: tuple[str, str, str], drop: str | None = None) -> None:
    s["objects"] = [o for o in s["objects"] if o[1] != drop] + list(extra)


# Each is one way the state can stray from saved_state: alone or several at once.
MUTATIONS = {
    "status processing": lambda s: s["job"].update(status="processing"),
    "status failed": lambda s: s["job"].update(status="failed"),
    "status cancelled": lambda s: s["job"].update(status="cancelled"),
    "metadata source only": lambda s: (without(s, "destination"), meta(s, source="character_portrait")),
    "metadata has a name": lambda s: meta(s, characterName="Mandy"),
    "metadata has a blank name": lambda s: meta(s, character_name="  "),
    "character id upper case": lambda s: meta(s, character_id=str(CHAR).upper()),
    "character id in braces": lambda s: meta(s, character_id="{" + str(CHAR) + "}"),
    "character id padded": lambda s: meta(s, character_id=f" {CHAR} "),
    "character id missing": lambda s: without(s, "character_id"),
    "character id of another character": lambda s: meta(s, character_id=str(OTHER_CHAR)),
    "character id a number": lambda s: meta(s, character_id=20),
    "metadata an array": lambda s: s["job"].update(metadata=[s["job"]["metadata"]]),
    "metadata nested deep": lambda s: meta(s, extra=deep(70)),
    "metadata nested 50": lambda s: meta(s, extra=deep(50)),
    "metadata big number": lambda s: meta(s, extra=10 ** 4100),
    "metadata provider url": lambda s: meta(s, original_fal_url="https://v3.fal.media/x.png"),
    "job created at infinity": lambda s: s["job"].update(created_at=INFINITY),
    "job completed at infinity": lambda s: s["job"].update(completed_at=INFINITY),
    "job completed at null": lambda s: s["job"].update(completed_at=None),
    "character of another user": lambda s: character(s, user_id=OTHER),
    "character deleted": lambda s: character(s, id=uuid.uuid4()),
    "character image on the temp key": lambda s: character(s, image_url=f"workspace-temp/{TEMP}"),
    "character image empty": lambda s: character(s, image_url=None),
    "character image another key": lambda s: character(s, image_url=f"user-library/{PREFIX}{OTHER_CHAR}.png"),
    "character image a provider url": lambda s: character(s, image_url="https://v3.fal.media/x.png"),
    "character image another job's library key": lambda s: character(s, image_url=f"user-library/{USER}/{OTHER_JOB}_{CHAR}.png"),
    "character image another user's library key": lambda s: character(s, image_url=f"user-library/{OTHER}/{OTHER_JOB}.png"),
    "character image the key padded": lambda s: character(s, image_url=f" user-library/{KEY} "),
    "character image the key upper case": lambda s: character(s, image_url=f"user-library/{KEY}".upper()),
    "character image the temp key": lambda s: character(s, image_url=f"workspace-temp/{TEMP}"),
    "character image the asset's key": lambda s: character(s, image_url=f"workspace-temp/{USER}/{ASSET}.png"),
    "character image the bucket alone": lambda s: character(s, image_url="user-library/"),
    "character image climbs to the temp key": lambda s: character(s, image_url=f"user-library/../workspace-temp/{TEMP}"),
    "character image a storage url": lambda s: character(
        s, image_url=f"https://p.supabase.co/storage/v1/object/public/workspace-temp/{TEMP}"),
    "character created at infinity": lambda s: character(s, created_at=INFINITY),
    "character name too long": lambda s: character(s, name="M" * 10_001),
    "character created after the job": lambda s: character(s, created_at=JOB_AT + timedelta(seconds=30)),
    "row invisible": lambda s: first_row(s, tags=[], category="general", roleplay={}),
    "row visible by tags only": lambda s: first_row(s, category="general", roleplay={"job_id": str(JOB)}),
    "row visible by category only": lambda s: first_row(s, tags=None, roleplay={}),
    "row missing": lambda s: s["rows"].clear(),
    "duplicate row": lambda s: s["rows"].append(row(KEY)),
    "second row other extension": lambda s: s["rows"].append(row(f"{PREFIX}{CHAR}.webp")),
    "generic row at the asset": lambda s: s["rows"].append(row(f"{USER}/{ASSET}.png", tags=[], category="general",
                                                               roleplay={}, generation={}, character_id=None)),
    "row naming the job upper case": lambda s: s["rows"].append(row(f"{USER}/{uuid.uuid4()}.png", roleplay={
        "job_id": str(JOB).upper()}, generation={}, character_id=None, tags=[], category="general")),
    "row naming the job in braces": lambda s: s["rows"].append(row(f"{USER}/{uuid.uuid4()}.png", roleplay={},
                                                                  generation={"job_id": "{" + str(JOB) + "}"})),
    "row naming the job": lambda s: s["rows"].append(row(f"{USER}/{uuid.uuid4()}.png", roleplay={"job_id": str(JOB)})),
    "row naming another job leniently": lambda s: s["rows"].append(row(f"{USER}/{OTHER_JOB}_x.png", roleplay={
        "job_id": f"urn:uuid:{OTHER_JOB}"})),
    "row naming another job": lambda s: s["rows"].append(row(f"{USER}/{OTHER_JOB}_x.png", roleplay={
        "job_id": str(OTHER_JOB)}, generation={"job_id": str(OTHER_JOB)})),
    "row bound to another character": lambda s: first_row(s, character_id=OTHER_CHAR),
    "row roleplay bound to another character": lambda s: first_row(s, character_id=None, roleplay={
        "type": "character_portrait", "character_id": str(OTHER_CHAR)}),
    "row roleplay bound leniently": lambda s: first_row(s, character_id=None, roleplay={
        "type": "character_portrait", "character_id": str(CHAR).upper()}),
    "row bound to nobody": lambda s: first_row(s, character_id=None, roleplay={"type": "character_portrait"}),
    "row tags hold a null": lambda s: first_row(s, tags=["character", None]),
    "row created at infinity": lambda s: first_row(s, created_at=INFINITY),
    "row roleplay nested deep": lambda s: first_row(s, roleplay={"type": "character_portrait", "x": deep(70)}),
    "row of another user": lambda s: first_row(s, user_id=OTHER),
    "row in another user's folder": lambda s: (first_row(s, path=f"{OTHER}/{JOB}_{CHAR}.png"),
                                               character(s, image_url=f"user-library/{OTHER}/{JOB}_{CHAR}.png")),
    "row at a key with a dot-dot": lambda s: (first_row(s, path=f"{PREFIX}{CHAR}/../x.png"),
                                             character(s, image_url=f"user-library/{PREFIX}{CHAR}/../x.png")),
    "asset of another user": lambda s: first_asset(s, user_id=OTHER),
    "second asset of another user": lambda s: s["assets"].append({**s["assets"][0], "id": uuid.uuid4(),
                                                                  "user_id": OTHER} if s["assets"] else {
        "id": uuid.uuid4(), "user_id": OTHER, "path": TEMP, "created_at": None}),
    "asset path climbs": lambda s: first_asset(s, path=f"{USER}/../{OTHER}/x.png"),
    "asset path a url": lambda s: first_asset(s, path="https://v3.fal.media/x.png"),
    "asset path empty": lambda s: first_asset(s, path=""),
    "asset path another folder": lambda s: first_asset(s, path=f"{OTHER}/{JOB}_1.png"),
    "asset created at infinity": lambda s: first_asset(s, created_at=INFINITY),
    "asset created at null": lambda s: first_asset(s, created_at=None),
    "no asset": lambda s: s["assets"].clear(),
    "library object gone": lambda s: objects(s, drop=KEY),
    "library object only an older version": lambda s: objects(s, ("user-library", KEY, "archived"), drop=KEY),
    "library object deleted (marker)": lambda s: objects(s, ("user-library", KEY, "marker"), drop=KEY),
    "older version beside the object": lambda s: objects(s, ("user-library", KEY, "archived")),
    "another object under the prefix": lambda s: objects(s, ("user-library", f"{PREFIX}{OTHER_CHAR}.png", "current")),
    "an odd object under the prefix": lambda s: objects(s, ("user-library", f"{PREFIX}x.png", "current")),
    "a thumbnail beside the object": lambda s: objects(s, ("user-library", f"{PREFIX}{CHAR}.thumb.webp", "current")),
    "a deeper object under the prefix": lambda s: objects(s, ("user-library", f"{PREFIX}x/y.png", "current")),
    "temp object gone": lambda s: objects(s, drop=TEMP),
}


def build(conn: psycopg.Connection, s: dict[str, Any], *, newer: bool) -> None:
    conn.execute("truncate jobs, workspace_assets, characters, user_library, storage.objects")
    job = s["job"]
    conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at, completed_at) "
                 "values (%s, %s, 'image', %s, %s, %s, %s)",
                 (JOB, USER, job["status"], Jsonb(job["metadata"]), job["created_at"], job["completed_at"]))
    for c in s["characters"]:
        conn.execute("insert into characters (id, user_id, name, description, image_url, created_at) "
                     "values (%s, %s, %s, 'd', %s, %s)", (c["id"], c["user_id"], c["name"], c["image_url"], c["created_at"]))
    for r in s["rows"]:
        columns = ["id", "user_id", "asset_type", "storage_path", "file_size_bytes", "mime_type", "original_prompt",
                   "model_used", "tags", "content_category", "roleplay_metadata", "created_at"]
        values = [r["id"], r["user_id"], "image", r["path"], 4, "image/png", "p", "m", r["tags"], r["category"],
                  Jsonb(r["roleplay"]), r["created_at"]]
        if newer:
            # user_library.character_id references characters (on delete cascade): a deleted character's
            # rows lose it here, as rows written before the column was.
            bound = r["character_id"] if r["character_id"] in {c["id"] for c in s["characters"]} else None
            columns += ["character_id", "generation_metadata"]
            values += [bound, Jsonb(r["generation"])]
        conn.execute(f"insert into user_library ({', '.join(columns)}) values ({', '.join(['%s'] * len(values))})",
                     values)
    for index, a in enumerate(s["assets"]):
        conn.execute("insert into workspace_assets (id, user_id, job_id, asset_index, asset_type, temp_storage_path, "
                     "file_size_bytes, mime_type, generation_seed, original_prompt, model_used, created_at) values "
                     "(%s, %s, %s, %s, 'image', %s, 4, 'image/png', 7, 'p', 'm', %s)",
                     (a["id"], a["user_id"], JOB, index, a["path"], a["created_at"]))
    for bucket, name, version in s["objects"]:
        conn.execute("insert into storage.objects (bucket_id, name, metadata, archived_at, is_delete_marker) "
                     "values (%s, %s, %s, %s, %s)", (bucket, name, Jsonb({"size": 4, "mimetype": "image/png"}),
                                                     NOW if version == "archived" else None, version == "marker"))


def build_folder(root: Path, s: dict[str, Any]) -> None:
    """The same objects as files: a folder holds only current versions."""
    shutil.rmtree(root)
    for bucket in ("workspace-temp", "user-library"):
        (root / bucket).mkdir(parents=True)
    for bucket, name, version in s["objects"]:
        if version == "current":
            path = root / bucket / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x89PNG")


_OPENED: dict[tuple[str, str], tuple[psycopg.Connection, Backends, Path]] = {}
KINDS = ["database", "folder"]  # where the prefilter reads the objects: storage.objects, or the folder's listing


def opened(admin_url: str, shape: str, kind: str) -> tuple[psycopg.Connection, Backends, Path]:
    """One database per shape and kind for all the examples (each example truncates it): the app's
    tables, and storage.objects as Supabase keeps it, with object versioning's columns; or a folder."""
    if (shape, kind) not in _OPENED:
        url = _fresh(admin_url, TEMPLATE if shape == "newer" else OLD_SHAPE_TEMPLATE)
        conn = psycopg.connect(url, autocommit=True)
        conn.execute(SCHEMA)
        conn.execute("insert into storage.buckets (id, name) values ('workspace-temp', 'workspace-temp'), "
                     "('user-library', 'user-library')")
        conn.execute("alter table storage.objects drop constraint objects_pkey, add column archived_at timestamptz, "
                     "add column is_delete_marker boolean not null default false")
        conn.execute("drop index storage.bucketid_objname")
        repository = PostgresRepository.connect(url)
        root = Path(tempfile.mkdtemp(prefix="charfix-prefilter-"))
        storage = LocalStorage(root)
        if kind == "database":
            catalogue, why = DatabaseCatalogue.open(repository)
            assert catalogue is not None, why
            backends = Backends(repository=repository, storage=storage, catalogue=catalogue,
                                prefilter=Prefilter(repository, catalogue.current("so")))
        else:
            backends = Backends(repository=repository, storage=storage, prefilter=Prefilter(repository, None))
        _OPENED[(shape, kind)] = conn, backends, root
    return _OPENED[(shape, kind)]


def judged(admin_url: str, shape: str, s: dict[str, Any], kind: str = "database") -> tuple[bool, Any]:
    """(whether the prefilter skips the job, the full path's diagnosis): the full path reads the
    objects from the same place the prefilter did."""
    conn, backends, root = opened(admin_url, shape, kind)
    build(conn, s, newer=shape == "newer")
    build_folder(root, s)
    jobs = backends.repository.jobs_by_id([JOB])
    assert backends.prefilter is not None
    skipped = JOB in backends.prefilter.provably_saved(jobs, backends.listings)
    # A scan proves a window of the query's jobs in one statement: it must say the same of this job.
    scanning = backends.prefilter.scanning(JobQuery(since=JOB_AT - timedelta(days=1)))
    assert (JOB in scanning.provably_saved(jobs, backends.listings)) == skipped
    diagnosis = diagnose(collect_facts(backends, jobs)[0], Rules(now=NOW))
    return skipped, diagnosis


def mutated(names: list[str]) -> dict[str, Any]:
    s = copy.deepcopy(saved_state())
    for name in names:
        MUTATIONS[name](s)
    return s


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", ["newer", "older"])
@example(names=[])
@example(names=["library object only an older version"])
@example(names=["row naming the job upper case"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(names=st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=3, unique=True))
def test_every_job_the_prefilter_skips_the_diagnosis_calls_saved(admin_url, templates, shape, kind, names):
    skipped, diagnosis = judged(admin_url, shape, mutated(names), kind)
    event("skipped" if skipped else "read whole")
    if skipped:
        assert diagnosis.state == State.SAVED and not diagnosis.reasons, (names, diagnosis.state, diagnosis.codes)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", ["newer", "older"])
def test_each_way_to_stray_from_saved_alone(admin_url, templates, shape, kind):
    """Every mutation on its own (the property above samples their combinations)."""
    wrong = []
    for name in sorted(MUTATIONS):
        skipped, diagnosis = judged(admin_url, shape, mutated([name]), kind)
        if skipped and (diagnosis.state != State.SAVED or diagnosis.reasons):
            wrong.append((name, diagnosis.state, diagnosis.codes))
    assert wrong == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", ["newer", "older"])
def test_the_saved_state_is_skipped_and_harmless_changes_keep_it_skipped(admin_url, templates, shape, kind):
    """The property above holds trivially for a prefilter that skips nothing: this one does skip."""
    harmless = [[], ["a thumbnail beside the object"], ["older version beside the object"], ["temp object gone"],
                ["row naming another job"], ["metadata provider url"], ["no asset"], ["asset path empty"],
                ["row visible by tags only"], ["row bound to nobody"], ["job completed at null"],
                ["metadata nested 50"], ["character image another key"],
                ["character image another job's library key"], ["character image another user's library key"]]
    for names in harmless:
        skipped, diagnosis = judged(admin_url, shape, mutated(names), kind)
        assert diagnosis.state == State.SAVED
        assert skipped, names


# -- the counts stay exact ---------------------------------------------------------------------


def test_counts_are_the_same_with_and_without_the_prefilter(seeded, tmp_path):
    """list-stuck's tally, its summary and backfill's counts: identical, with the saved jobs skipped."""
    _bulk_incidents(seeded, 5)
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        settings_ = Settings(db_url=seeded.db_url, supabase_url=srv.url, service_role_key=key)
        rules = Rules(now=seeded.now)
        selection = Selection(query=JobQuery(since=seeded.now - timedelta(days=365)), rules=rules)
        backends = build_backends(settings_)
        full = list(scan(backends, selection.query, rules))
        fast = list(scan(backends, selection.query, rules, skip_saved=True))
        assert [d.job_id for d in fast] == [d.job_id for d in full]
        assert [d.state for d in fast] == [d.state for d in full]
        unread = [d for d in fast if UNREAD_NOTE in d.notes]
        assert unread and all(d.state == State.SAVED for d in unread)
        tally = Tally()
        shown = [d.to_json() for d in selected(backends, selection, tally)]
        assert shown == [d.to_json() for d in full if selection.wants(d)]
        assert tally.examined == len(full) and tally.by_state[State.SAVED] == sum(d.state == State.SAVED for d in full)
        summary = summarize(backends, selection).to_json()
        every = Selection(query=selection.query, rules=rules, every_state=True)
        assert summarize(backends, every).to_json()["examined"] == summary["examined"]
        no_catalogue = Backends(repository=backends.repository, storage=backends.storage)
        assert summarize(no_catalogue, selection).to_json() == summary
        dry = backfill(backends, selection, dry_run=True).to_json()
        assert dry == backfill(no_catalogue, selection, dry_run=True).to_json()
        assert dry["already_fine"] == tally.by_state[State.SAVED]
        backends.repository.close()
    # A local folder: the rows proven in SQL, the objects confirmed by the folder's own listing.
    folder = build_backends(Settings(db_url=seeded.db_url, storage_dir=seeded.storage))
    assert folder.prefilter is not None and folder.catalogue is None
    fast = list(scan(folder, selection.query, rules, skip_saved=True))
    assert [(d.job_id, d.state) for d in fast] == [(d.job_id, d.state) for d in full]
    assert any(UNREAD_NOTE in d.notes for d in fast)
    assert summarize(folder, selection).to_json() == summary
    assert backfill(folder, selection, dry_run=True).to_json() == dry
    folder.close()


def test_a_selection_that_shows_saved_jobs_reads_them_whole(seeded):
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        backends = build_backends(Settings(db_url=seeded.db_url, supabase_url=srv.url, service_role_key=key))
        rules = Rules(now=seeded.now)
        query = JobQuery(since=seeded.now - timedelta(days=365))
        for selection in (Selection(query=query, rules=rules, every_state=True),
                          Selection(query=query, rules=rules, states=frozenset({State.SAVED}))):
            shown = list(selected(backends, selection, Tally()))
            saved = [d for d in shown if d.state == State.SAVED]
            assert saved and all(UNREAD_NOTE not in d.notes and d.timeline for d in saved)
        backends.repository.close()


def _saved_jobs(seeded, count: int, *, named_every: int = 0) -> None:
    """`count` portraits saved the way auto-save leaves them (the state the prefilter proves), one user
    each, a minute apart; every `named_every`-th also names its character (read whole: not proven)."""
    with psycopg.connect(seeded.db_url, autocommit=True) as conn:
        for n in range(count):
            user, job, character = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            created = seeded.now - timedelta(hours=2, minutes=n)
            named = {"characterName": f"Saved {n}"} if named_every and n % named_every == 0 else {}
            key = f"{user}/{job}_{character}.png"
            conn.execute("insert into characters (id, user_id, name, description, image_url, created_at) "
                         "values (%s, %s, %s, 'd', %s, %s)", (character, user, f"Saved {n}", f"user-library/{key}",
                                                              created - timedelta(days=1)))
            conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at, completed_at) "
                         "values (%s, %s, 'image', 'completed', %s, %s, %s)",
                         (job, user, Jsonb({"destination": "character_portrait", "character_id": str(character), **named}),
                          created, created + timedelta(seconds=10)))
            conn.execute("insert into user_library (user_id, asset_type, storage_path, file_size_bytes, mime_type, "
                         "original_prompt, model_used, tags, content_category, roleplay_metadata, created_at) values "
                         "(%s, 'image', %s, 4, 'image/png', 'p', 'm', %s, 'character', %s, %s)",
                         (user, key, ["character"], Jsonb({"type": "character_portrait", "job_id": str(job)}),
                          created + timedelta(seconds=20)))
            path = seeded.storage / "user-library" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x89PNG")


def test_jobs_read_whole_are_gathered_across_pages(seeded):
    """With most of a page proven saved, the jobs left to read wait for a whole batch across pages:
    one read of their rows for several pages, in the same order and with the same diagnoses."""
    _saved_jobs(seeded, 36, named_every=6)  # one job to read on each page of 6
    folder = build_backends(Settings(db_url=seeded.db_url, storage_dir=seeded.storage))
    rules = Rules(now=seeded.now)
    query = JobQuery(since=seeded.now - timedelta(hours=3))  # the jobs above (and the demo's recent ones)
    plain = Backends(repository=folder.repository, storage=folder.storage)
    full = list(scan(plain, query, rules, page_size=6))
    reads = []
    real = folder.repository.library_items_for
    folder.repository.library_items_for = lambda jobs, assets: reads.append(len(jobs)) or real(jobs, assets)  # type: ignore[method-assign]
    fast = list(scan(folder, query, rules, page_size=6, skip_saved=True))
    assert [(d.job_id, d.state) for d in fast] == [(d.job_id, d.state) for d in full]
    proven = {d.job_id for d in fast if UNREAD_NOTE in d.notes}
    assert len(proven) >= 30
    assert sum(reads) == len(full) - len(proven)  # each job left is read once
    pages_to_read = {i // 6 for i, d in enumerate(full) if d.job_id not in proven}
    assert len(reads) < len(pages_to_read), (reads, sorted(pages_to_read))  # page by page, they would be equal
    assert all(n >= 3 for n in reads[:-1])  # every batch but the last holds half a page of jobs to read
    folder.close()

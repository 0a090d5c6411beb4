"""Properties of repair over generated database states (hypothesis), on the real Postgres, through
both backends (the Postgres adapter, and the Supabase adapters through the local test server):
a repair ends in `saved` or changes nothing; a second repair changes nothing; another user's rows and
an image the user chose are never touched. CHARFIX_HEAVY=1 runs more examples."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, UTC
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from charfix.diagnosis import Rules
from charfix.http import RetryPolicy, connect
from charfix.models import State
from charfix.repair.job import Outcome, RepairOptions, repair_job
from charfix.repository.postgres import PostgresRepository
from charfix.repository.supabase import SupabaseRepository
from charfix.backends import Backends
from charfix.queries.scan import diagnose_ids
from charfix.storage.local import LocalStorage
from charfix.storage.supabase import SupabaseStorage
from conftest import TEMPLATE, _fresh
from snapshots import snapshot
from tests.supabase_server import SupabaseTestServer, make_service_key

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
JOB_AT = NOW - timedelta(hours=3)
USER, OTHER = uuid.UUID(int=1), uuid.UUID(int=2)
EXAMPLES = 120 if os.environ.get("CHARFIX_HEAVY") == "1" else 25

character = st.fixed_dictionaries({
    "owner": st.sampled_from([USER, USER, OTHER]),
    "name": st.sampled_from(["Mandy", "mandy", "Mandy ", "Luna"]),
    "offset": st.sampled_from([-86400, -5, 25, 50, 7200]),
    "image": st.sampled_from([None, "", "https://v3.fal.media/x.png", "user-library/chosen/by-user.png", "temp"]),
})
scenario = st.fixed_dictionaries({
    "status": st.sampled_from(["queued", "processing", "completed", "failed"]),
    "key": st.sampled_from(["destination", "source"]),
    "reference": st.sampled_from(["name", "id:0", "id:missing", "none"]),
    "characters": st.lists(character, max_size=3),
    "asset": st.sampled_from(["key", "", "https://v3.fal.media/y.png", None]),
    "temp_object": st.booleans(),
    "library": st.sampled_from(["none", "generic", "object_only", "row_and_object"]),
    "seed": st.sampled_from([7, 3_000_000_000]),
})


def build(url: str, root: Path, s: dict) -> uuid.UUID:
    job = uuid.uuid4()
    key = f"{USER}/{job}_1700000000000.png"
    ids = [uuid.uuid4() for _ in s["characters"]]
    metadata = {s["key"]: "character_portrait"}
    if s["reference"] == "name":
        metadata["characterName"] = "Mandy"
    elif s["reference"] == "id:0" and ids:
        metadata["character_id"] = str(ids[0])
    elif s["reference"].startswith("id"):
        metadata["character_id"] = str(uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("insert into jobs (id, user_id, job_type, status, metadata, created_at) values (%s, %s, 'image', %s, %s, %s)",
                     (job, USER, s["status"], Jsonb(metadata), JOB_AT))
        for cid, c in zip(ids, s["characters"], strict=True):
            image = f"workspace-temp/{key}" if c["image"] == "temp" else c["image"]
            conn.execute("insert into characters (id, user_id, name, description, image_url, created_at, updated_at) "
                         "values (%s, %s, %s, 'd', %s, %s, %s)", (cid, c["owner"], c["name"], image,
                         JOB_AT + timedelta(seconds=c["offset"]), JOB_AT + timedelta(seconds=c["offset"])))
        asset_id = uuid.uuid4()
        if s["asset"] is not None:
            path = key if s["asset"] == "key" else s["asset"]
            conn.execute("insert into workspace_assets (id, user_id, job_id, asset_type, temp_storage_path, file_size_bytes, "
                         "mime_type, generation_seed, original_prompt, model_used, created_at) values "
                         "(%s, %s, %s, 'image', %s, 4, 'image/png', %s, 'p', 'm', %s)",
                         (asset_id, USER, job, path, s["seed"], JOB_AT + timedelta(seconds=9)))
        if s["library"] in ("generic", "row_and_object"):
            lib_key = f"{USER}/{asset_id}.png" if s["library"] == "generic" else f"{USER}/{job}_{ids[0] if ids else uuid.uuid4()}.png"
            tags, category = ([], "general") if s["library"] == "generic" else (["character", "portrait"], "character")
            conn.execute("insert into user_library (user_id, asset_type, storage_path, file_size_bytes, mime_type, "
                         "original_prompt, model_used, tags, content_category, created_at) values "
                         "(%s, 'image', %s, 4, 'image/png', 'p', 'm', %s, %s, %s)", (USER, lib_key, tags, category, JOB_AT))
            _write(root, "user-library", lib_key)
        if s["library"] == "object_only" and ids:
            _write(root, "user-library", f"{USER}/{job}_{ids[0]}.png")
    if s["temp_object"]:
        _write(root, "workspace-temp", key)
    return job


def _write(root: Path, bucket: str, key: str) -> None:
    path = root / bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG")


def protected(url: str) -> list:
    """What must never change: other users' characters, and any image a user chose. A portrait row
    for the user's own character moves its updated_at through the app's trigger (docs/domain.md
    section 6): only other users' characters keep theirs."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select id, image_url, reference_image_url, seed_locked, case when user_id = %s then updated_at end "
            "from characters where user_id = %s or image_url = 'user-library/chosen/by-user.png' order by id",
            (OTHER, OTHER)).fetchall()


@contextmanager
def opened(backend: str, url: str, root: Path) -> Iterator[Backends]:
    """The Postgres adapter with a storage folder, or the Supabase adapters through the local test
    server over the same database and folder."""
    if backend == "postgres":
        backends = Backends(repository=PostgresRepository.connect(url), storage=LocalStorage(root))
        yield backends
        backends.repository.close()
        return
    key = make_service_key()
    with SupabaseTestServer(dsn=url, storage_root=root, service_key=key) as server:
        client = connect(server.url, key, retry=RetryPolicy(attempts=2, base_seconds=0.01, cap_seconds=0.02), timeout=5)
        yield Backends(repository=SupabaseRepository(client), storage=SupabaseStorage(client))


# Found by this test: the repair pointed an older "Mandy" (whose image was this job's temp key) at the
# library key; the diagnosis then no longer took that image as evidence and said needs_review.
FOUND = {"status": "queued", "key": "destination", "reference": "name", "asset": "key", "temp_object": True,
         "library": "row_and_object", "seed": 7,
         "characters": [{"owner": USER, "name": "Mandy", "offset": 7200, "image": None},
                        {"owner": USER, "name": "Mandy", "offset": -86400, "image": "temp"}]}


@pytest.mark.parametrize("backend", ["postgres", "supabase"])
@example(s=FOUND)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(s=scenario)
def test_repair_ends_saved_or_changes_nothing_and_twice_equals_once(admin_url, templates, backend, s):
    url = _fresh(admin_url, TEMPLATE)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        (root / "workspace-temp").mkdir()
        (root / "user-library").mkdir()
        job = build(url, root, s)
        backends = stack.enter_context(opened(backend, url, root))
        rules = Rules(now=NOW)
        before = snapshot(url, root)
        guarded = protected(url)
        first = repair_job(backends, job, RepairOptions(rules=rules), None)
        after_first = snapshot(url, root)
        after = diagnose_ids(backends, [job], rules)[0]
        if first.outcome == Outcome.REPAIRED:
            assert after.state in (State.SAVED, State.NEEDS_REVIEW), (s, after.codes)
            assert after.state == State.SAVED or after.codes == ["library_duplicates"]
        else:
            assert after_first == before, (s, first)
        second = repair_job(backends, job, RepairOptions(rules=rules), None)
        assert second.outcome in (Outcome.ALREADY_FINE, Outcome.SKIPPED), (s, second)
        assert snapshot(url, root) == after_first
        assert protected(url) == guarded, s

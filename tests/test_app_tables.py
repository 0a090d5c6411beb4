"""charfix on the app's real tables: the triggers that move characters.updated_at, the NOT NULL
library columns, NULL workspace-asset times (docs/domain.md section 6). Every test runs on both
user_library shapes, and the repairs on both backends (Postgres, and REST through the test server)."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import timedelta

import pytest

from charfix.diagnosis import Rules
from charfix.models import State
from charfix.repository.postgres import PostgresRepository
from charfix.backends import Backends
from charfix.queries.scan import diagnose_ids
from charfix.storage.local import LocalStorage
from snapshots import duplicate_rows, snapshot
from test_cli import _normalized
from tests.supabase_server import SupabaseTestServer, make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHAPES = ["seeded", "seeded_old"]
BACKENDS = ["postgres", "rest"]
INCIDENT_WRITES = 5  # complete, link, copy, insert row, update character


@contextmanager
def backend_args(kind: str, seeded):
    """The console script's arguments and environment for one backend over the seeded tables."""
    if kind == "postgres":
        yield ["--db-url", seeded.db_url, "--storage-dir", str(seeded.storage)], {}
        return
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        yield [], {"SUPABASE_URL": srv.url, "SUPABASE_SERVICE_ROLE_KEY": key}


def diagnosis_of(seeded, job_id):
    repo = PostgresRepository.connect(seeded.db_url)
    try:
        return diagnose_ids(Backends(repo, LocalStorage(seeded.storage)), [job_id], Rules(now=seeded.now))[0]
    finally:
        repo.close()


def incident_saved(seeded) -> None:
    """The incident as the Characters tab needs it: one portrait row, Mandy pointing at it, job completed."""
    job = seeded.case("incident").job_id
    with seeded.connect() as conn:
        rows = conn.execute("select storage_path from user_library where roleplay_metadata->>'job_id' = %s",
                            (str(job),)).fetchall()
        image, reference = conn.execute("select image_url, reference_image_url from characters "
                                        "where name = 'Mandy'").fetchone()
        status, completed_at, asset_created = conn.execute(
            "select j.status, j.completed_at, a.created_at from jobs j join workspace_assets a on a.job_id = j.id "
            "where j.id = %s", (str(job),)).fetchone()
    assert len(rows) == 1
    assert image == reference == f"user-library/{rows[0][0]}"
    assert (status, completed_at) == ("completed", asset_created)
    assert diagnosis_of(seeded, job).state == State.SAVED


# -- the schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "moves"), [("seeded", True), ("seeded_old", False)])
def test_a_portrait_row_moves_its_characters_updated_at_on_the_newer_shape_only(shape, moves, request):
    tables = request.getfixturevalue(shape)
    if True:
        with tables.connect() as conn:
            character, created, before = conn.execute(
                "select id, created_at, updated_at from characters where name = 'Mandy'").fetchone()
            live = {r[0] for r in conn.execute("select column_name from information_schema.columns "
                                               "where table_name = 'user_library'").fetchall()}
            portrait = {"character_id": character, "output_type": "portrait"} if moves else {}
            values = {"user_id": character, "asset_type": "image", "storage_path": "x/y.png", "file_size_bytes": 1,
                      "mime_type": "image/png", "original_prompt": "p", "model_used": "m", **portrait}
            conn.execute(f"insert into user_library ({', '.join(values)}) values "
                         f"({', '.join(['%s'] * len(values))})", list(values.values()))
            after, = conn.execute("select updated_at from characters where id = %s", (character,)).fetchone()
        assert before == created
        assert (after > before) == moves
        assert ({"is_primary", "is_pinned", "sort_order", "label", "generation_metadata"} <= live) == moves


def test_the_newer_library_columns_are_not_null_with_defaults(seeded, tmp_path, cli):
    result = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "repair",
                 str(seeded.case("incident").job_id), "--yes", "--audit-log", str(tmp_path / "a.jsonl"))
    assert result.code == 0, result.stderr
    with seeded.connect() as conn:
        found = conn.execute("select is_primary, is_pinned, sort_order, generation_metadata->>'job_id' "
                             "from user_library where roleplay_metadata->>'job_id' = %s",
                             (str(seeded.case("incident").job_id),)).fetchone()
        count, = conn.execute("select portrait_count from characters where name = 'Mandy'").fetchone()
    assert found == (False, False, 0, str(seeded.case("incident").job_id))
    assert count == 1


# -- evidence that survives the triggers -------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_a_creation_flow_character_edited_once_still_gets_its_portrait(shape, kind, request, cli, tmp_path):
    seeded = request.getfixturevalue(shape)
    with seeded.connect() as conn:  # the user wrote a description: the trigger moves updated_at
        conn.execute("update characters set description = 'edited' where name = 'Mandy'")
    with backend_args(kind, seeded) as (args, env):
        result = cli(*args, "repair", str(seeded.case("incident").job_id), "--yes",
                     "--audit-log", str(tmp_path / "a.jsonl"), env=env)
    assert result.code == 0, result.stderr
    incident_saved(seeded)


@pytest.mark.parametrize("crash_after", range(1, INCIDENT_WRITES))
@pytest.mark.parametrize("kind", BACKENDS)
def test_a_repair_killed_between_any_two_steps_is_finished_by_the_next_run(kind, crash_after, seeded, cli, tmp_path):
    """The README's promise on the tables with the triggers: over REST nothing is transactional, so a
    kill after the row insert leaves Mandy's updated_at moved and her provider URL in place."""
    job = str(seeded.case("incident").job_id)
    with backend_args(kind, seeded) as (args, env):
        killed = cli(*args, "repair", job, "--yes", "--audit-log", str(tmp_path / "a.jsonl"),
                     env=env, crash_after=crash_after)
        assert killed.code == 70, killed.stderr  # the launcher's abrupt exit (tests/crashing.py), as a kill leaves it
        finished = cli(*args, "repair", job, "--yes", "--audit-log", str(tmp_path / "a.jsonl"), env=env)
        assert finished.code == 0, finished.stderr
        again = cli(*args, "diagnose", job, "--json", env=env)
    incident_saved(seeded)
    assert json.loads(again.stdout)[0]["state"] == "saved"
    from charfix.audit import log as audit

    made = audit.writes(audit.read(tmp_path / "a.jsonl"))  # what happened, killed run and finishing run together
    assert sorted(line["step"] for line in made if line["step"] != "copy_object") == sorted(
        ["complete_job", "link_character", "insert_library_row", "update_character_image"])


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_half_done_job_whose_row_moved_updated_at_is_finished(kind, seeded, cli, tmp_path):
    """What an interrupted REST run leaves: job completed and linked, object copied, row inserted (the
    trigger moved Mandy's updated_at), character not updated. The next run updates the character."""
    job = str(seeded.case("incident").job_id)
    with backend_args(kind, seeded) as (args, env):
        assert cli(*args, "repair", job, "--yes", "--audit-log", str(tmp_path / "a.jsonl"), env=env).code == 0
    with seeded.connect() as conn:  # put back only the character, as if its update never landed
        conn.execute("update characters set image_url = %s, reference_image_url = %s where name = 'Mandy'",
                     ("https://v3.fal.media/files/penguin/demo-mandy.png",) * 2)
    before = diagnosis_of(seeded, seeded.case("incident").job_id)
    assert [s.action.value for s in before.plan] == ["update_character_image"]
    with backend_args(kind, seeded) as (args, env):
        assert cli(*args, "repair", job, "--yes", "--audit-log", str(tmp_path / "b.jsonl"), env=env).code == 0
    incident_saved(seeded)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_linked_job_still_yields_the_image_to_a_later_draft(shape, request):
    """A run linked the incident to Mandy and stopped. The user had made a second draft before pressing
    Create: Mandy shows that draft's provider URL, which the linked job must not overwrite."""
    from charfix.demo.sample import ALICE

    seeded = request.getfixturevalue(shape)
    job = seeded.case("incident").job_id
    with seeded.connect() as conn:
        mandy, = conn.execute("select id from characters where name = 'Mandy'").fetchone()
        created, = conn.execute("select created_at from jobs where id = %s", (job,)).fetchone()
        conn.execute("update jobs set metadata = jsonb_set(metadata, '{character_id}', to_jsonb(%s::text)) "
                     "where id = %s", (str(mandy), job))
        conn.execute("insert into jobs (user_id, job_type, status, metadata, created_at) values "
                     "(%s, 'image_high', 'completed', %s, %s)",
                     (ALICE, json.dumps({"destination": "character_portrait", "characterName": "Mandy"}),
                      created + timedelta(seconds=12)))
    diagnosis = diagnosis_of(seeded, job)
    assert "update_character_image" not in [s.action.value for s in diagnosis.plan]
    assert any("keeps it" in note for note in diagnosis.notes)


# -- completed_at from the output's own time ---------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_an_asset_without_created_at_completes_the_job_at_the_objects_time(shape, request, cli, tmp_path):
    seeded = request.getfixturevalue(shape)
    job = seeded.case("incident").job_id
    with seeded.connect() as conn:
        conn.execute("update workspace_assets set created_at = null, expires_at = null where job_id = %s", (job,))
        created, = conn.execute("select created_at from jobs where id = %s", (job,)).fetchone()
    stored = next(o for o in seeded.sample.objects if o[0] == "workspace-temp" and f"/{job}_" in o[1])
    result = cli("--db-url", seeded.db_url, "--storage-dir", str(seeded.storage), "repair", str(job), "--yes",
                 "--audit-log", str(tmp_path / "a.jsonl"))
    assert result.code == 0, result.stderr
    with seeded.connect() as conn:
        completed_at, = conn.execute("select completed_at from jobs where id = %s", (job,)).fetchone()
    assert completed_at.year > 1970 and completed_at >= created
    assert abs(completed_at - stored[3]) < timedelta(seconds=1)  # the object's time, to the file system's grain


# -- what the --since window hides ------------------------------------------------------------------


def _plant_old_jobs(seeded, *, days: list[float], status: str = "processing", user=None) -> None:
    """Portrait jobs left queued/processing weeks ago, as an app user's requests leave them."""
    from charfix.demo.sample import BEN

    with seeded.connect() as conn:
        for n, age in enumerate(days):
            conn.execute("insert into jobs (user_id, job_type, status, metadata, created_at) values "
                         "(%s, 'image_high', %s, %s, %s)",
                         (user or BEN, status, json.dumps({"destination": "character_portrait",
                                                           "characterName": f"Old {n}"}),
                          seeded.now - timedelta(days=age)))


@pytest.mark.parametrize("kind", BACKENDS)
def test_open_before_counts_the_hidden_portrait_jobs_and_finds_the_oldest(kind, seeded):
    from charfix.demo.sample import ALICE, BEN
    from charfix.http import connect
    from charfix.repository.base import JobQuery
    from charfix.repository.supabase import SupabaseRepository

    _plant_old_jobs(seeded, days=[44.5, 20, 12])
    _plant_old_jobs(seeded, days=[50], status="completed")  # done: nothing to attend to
    with seeded.connect() as conn:  # not a portrait: never counted
        conn.execute("insert into jobs (user_id, job_type, status, metadata, created_at) values (%s, 'image', "
                     "'queued', '{\"destination\": \"workspace\"}', %s)", (BEN, seeded.now - timedelta(days=60)))
    since = seeded.now - timedelta(days=7)
    key = make_service_key()
    with SupabaseTestServer(dsn=seeded.db_url, storage_root=seeded.storage, service_key=key) as srv:
        repo = PostgresRepository.connect(seeded.db_url) if kind == "postgres" else SupabaseRepository(connect(srv.url, key))
        before = repo.queries
        everyone = repo.open_before(JobQuery(since=since))
        assert repo.queries - before == 1  # one statement or request, whatever the backlog
        ben = repo.open_before(JobQuery(since=since, user_id=BEN))
        alice = repo.open_before(JobQuery(since=since, user_id=ALICE))
        nothing = repo.open_before(JobQuery(since=seeded.now - timedelta(days=400)))
        repo.close()
    assert (everyone.count, everyone.oldest) == (3, seeded.now - timedelta(days=44.5))
    assert ben == everyone and (alice.count, alice.oldest) == (0, None) and nothing.count == 0


@pytest.mark.parametrize("kind", BACKENDS)
def test_list_stuck_says_what_the_window_hides(kind, seeded, cli):
    _plant_old_jobs(seeded, days=[44.5, 20])
    with backend_args(kind, seeded) as (args, env):
        plain = cli(*args, "list-stuck", env=env)
        as_json = cli(*args, "list-stuck", "--json", env=env)
        wide = cli(*args, "list-stuck", "--since", "45d", env=env)
    assert plain.code == as_json.code == wide.code == 0, plain.stderr + as_json.stderr + wide.stderr
    # Piped, stdout holds only jobs: the counts and the window's line go to stderr (docs/commands.md).
    line = [text for text in plain.stderr.splitlines() if "hides" in text]
    assert len(line) == 1 and "hides 2 older portrait job(s) still queued/processing" in line[0]
    assert "--since 45d" in line[0]
    assert "hides" not in plain.stdout and "portrait job(s) examined" in plain.stderr
    assert "hides 2 older" in " ".join(as_json.stderr.split()) and isinstance(json.loads(as_json.stdout), list)
    assert "hides" not in wide.stderr  # nothing queued or processing is older than 45 days
    assert examined(wide.stderr) == examined(plain.stderr) + 2  # the window now reaches them


def examined(stdout: str) -> int:
    return int(re.search(r"(\d+) portrait job\(s\) examined", stdout).group(1))


# The demo's backfill writes 26 times over REST; these stop it right after a row write of a by-id job
# (3) and of each creation-flow job (12: Rook's row upgraded, 20: the odd name's row, 25: Mandy's row),
# when the portrait trigger has moved the character's updated_at and its image is still the provider's.
@pytest.mark.parametrize("crash_after", [3, 12, 20, 25])
def test_a_backfill_over_rest_killed_mid_way_ends_as_an_uninterrupted_one(crash_after, seeded, cli, request, tmp_path):
    """No transaction over REST: every write lands on its own, the portrait trigger included. The
    next run finishes the jobs, and the end state is the one an uninterrupted run leaves."""
    with backend_args("rest", seeded) as (args, env):
        killed = cli(*args, "backfill-portraits", "--yes", "--audit-log", str(tmp_path / "a.jsonl"),
                     env=env, crash_after=crash_after)
        assert killed.code == 70, killed.stderr
        finished = cli(*args, "backfill-portraits", "--yes", "--audit-log", str(tmp_path / "a.jsonl"), env=env)
        assert finished.code == 0, finished.stderr
    twin = request.getfixturevalue("seeded_twin")  # the same sample, repaired in one go
    assert cli("--db-url", twin.db_url, "--storage-dir", str(twin.storage), "backfill-portraits", "--yes",
               "--audit-log", str(tmp_path / "b.jsonl")).code == 0
    assert _normalized(snapshot(seeded.db_url, seeded.storage), seeded) == _normalized(
        snapshot(twin.db_url, twin.storage), twin)
    assert len(duplicate_rows(seeded.db_url)) == 1  # only the demo's own duplicates case

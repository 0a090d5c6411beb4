"""`charfix user EMAIL|ID`: one view of a user's jobs, characters and library portraits, the same
over Postgres and over REST."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, UTC

import pytest

from charfix.demo.sample import ALICE
from charfix.diagnosis.portrait import is_visible
from charfix.models import LibraryItem
from test_cli import args
from tests.supabase_server import make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SIGNED = "https://abcd.supabase.co/storage/v1/object/sign/workspace-temp/x.png?token=eyJSECRETTOKEN"


def plant_signed_image(seeded) -> str:
    """A character whose image is a signed URL, as the app's editor stores one (token in the query)."""
    character_id = uuid.uuid4()
    with seeded.connect() as conn:
        conn.execute("insert into characters (id, user_id, name, description, image_url, created_at) "
                     "values (%s, %s, %s, %s, %s, %s)",
                     (character_id, ALICE, "Signed", "d", SIGNED, datetime.now(UTC)))
    return str(character_id)


def test_user_by_email_shows_jobs_by_state_characters_and_portraits(cli, seeded):
    signed = plant_signed_image(seeded)
    result = cli(*args(seeded, "user", "mandy@example.com", "--json"))
    assert result.code == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["user_id"] == str(ALICE) and view["email"] == "mandy@example.com"
    jobs = json.loads(cli(*args(seeded, "list-stuck", "--all", "--json", "--since", "30d", "--user", str(ALICE))).stdout)
    states: dict[str, int] = {}
    for job in jobs:
        states[job["state"]] = states.get(job["state"], 0) + 1
    assert view["jobs"]["by_state"] == states and view["jobs"]["examined"] == len(jobs)
    expected_characters = {str(c["id"]) for c in seeded.sample.characters if c["user_id"] == ALICE} | {signed}
    by_id = {c["id"]: c for c in view["characters"]}
    assert set(by_id) == expected_characters
    mandy = next(c for c in view["characters"] if c["name"] == "Mandy")
    assert mandy["image"] == "provider_url" and mandy["image_expires"] is True
    assert by_id[signed]["image"] == "signed_url" and "SECRETTOKEN" not in result.stdout
    visible = {str(row["id"]) for row in seeded.sample.library
               if row["user_id"] == ALICE and is_visible(LibraryItem.model_validate(row))}
    assert {row["id"] for row in view["library_portraits"]} == visible and visible
    table = cli(*args(seeded, "user", str(ALICE)))
    assert table.code == 0 and "provider URL: expires" in table.stdout and "SECRETTOKEN" not in table.stdout


def test_user_is_the_same_over_rest(cli, seeded, server):
    key = make_service_key()
    postgres = json.loads(cli(*args(seeded, "user", "mandy@example.com", "--json")).stdout)
    rest = cli("--storage-dir", str(seeded.storage), "user", "mandy@example.com", "--json",
               env={"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key})
    assert rest.code == 0, rest.stderr
    over_rest = json.loads(rest.stdout)
    assert over_rest.pop("since") and postgres.pop("since")  # each run's own clock
    assert over_rest == postgres and over_rest["characters"] and over_rest["library_portraits"]


def test_an_unknown_user_is_exit_4(cli, seeded):
    result = cli(*args(seeded, "user", "nobody@example.com"))
    assert result.code == 4 and result.stderr.startswith("error: no user has the email")
    bad = cli(*args(seeded, "user", "not-an-id"))
    assert bad.code == 2 and "neither a user id nor an email" in bad.stderr


def test_an_image_in_another_users_folder_is_not_called_a_library_portrait(cli, seeded):
    """The app shows a user only the objects in their own folder (docs/reliability.md, "The trust
    boundary"): a character pointed at another user's object shows nothing to its owner."""
    from charfix.demo.sample import BEN

    character_id = uuid.uuid4()
    with seeded.connect() as conn:
        conn.execute("insert into characters (id, user_id, name, description, image_url, created_at) "
                     "values (%s, %s, 'Borrowed', 'd', %s, now())", (character_id, ALICE, f"user-library/{BEN}/x.png"))
    result = cli(*args(seeded, "user", str(ALICE), "--json"))
    assert result.code == 0, result.stderr
    borrowed = next(c for c in json.loads(result.stdout)["characters"] if c["id"] == str(character_id))
    assert borrowed["image"] == "other"


def test_user_and_report_take_the_user_id_prefix_list_stuck_shows(cli, seeded):
    # list-stuck shows users as 8-character prefixes; `user` and `report --user` take them back.
    whole = json.loads(cli(*args(seeded, "user", str(ALICE), "--json")).stdout)
    shown = cli(*args(seeded, "user", str(ALICE)[:8], "--json"))
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["user_id"] == whole["user_id"] == str(ALICE)
    report = cli(*args(seeded, "report", "--user", str(ALICE)[:8]))
    assert report.code == 0, report.stderr
    whole_report = cli(*args(seeded, "report", "--user", str(ALICE))).stdout
    assert report.stdout.splitlines()[3:] == whole_report.splitlines()[3:]  # past the time it was made
    unknown = cli(*args(seeded, "user", "ffffffff"))
    assert unknown.code == 4 and unknown.stderr.count("\n") == 1, unknown.stderr

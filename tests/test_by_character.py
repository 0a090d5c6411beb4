"""`list-stuck --character NAME|ID`: the jobs about one character, alone or with `--user`."""

from __future__ import annotations

import json
import uuid

from psycopg.types.json import Jsonb

from charfix.demo.cases import INCIDENT_JOB
from charfix.demo.sample import ALICE, CHLOE
from test_cli import args


def job_ids(result) -> set[str]:
    assert result.code == 0, result.stderr
    return {row["job_id"] for row in json.loads(result.stdout)}


def character_id(seeded, name, user) -> str:
    return str(next(c["id"] for c in seeded.sample.characters if c["name"] == name and c["user_id"] == user))


def test_jobs_by_exact_name_with_and_without_user(cli, seeded):
    mandy = {str(INCIDENT_JOB), str(seeded.case("no_output").job_id)}
    assert job_ids(cli(*args(seeded, "list-stuck", "--all", "--json", "--character", "Mandy"))) == mandy
    with_user = cli(*args(seeded, "list-stuck", "--all", "--json", "--character", "Mandy", "--user", "mandy@example.com"))
    assert job_ids(with_user) == mandy
    other_user = cli(*args(seeded, "list-stuck", "--all", "--json", "--character", "Mandy", "--user", str(CHLOE)))
    assert job_ids(other_user) == set()
    # The default selection (needs attention) still applies: both Mandy jobs need someone.
    assert job_ids(cli(*args(seeded, "list-stuck", "--json", "--character", "Mandy"))) == mandy


def test_jobs_by_character_id(cli, seeded):
    mandy = character_id(seeded, "Mandy", ALICE)
    assert job_ids(cli(*args(seeded, "list-stuck", "--all", "--json", "--character", mandy))) == {str(INCIDENT_JOB)}
    # An exact-name candidate counts: the ambiguous "Luna" job is about both of Chloe's Lunas.
    lunas = [str(c["id"]) for c in seeded.sample.characters if c["name"] == "Luna" and c["user_id"] == CHLOE]
    assert len(lunas) == 2
    for luna in lunas:
        found = job_ids(cli(*args(seeded, "list-stuck", "--all", "--json", "--character", luna)))
        assert str(seeded.case("ambiguous").job_id) in found


def test_near_names_are_hints_never_matches(cli, seeded):
    result = cli(*args(seeded, "list-stuck", "--all", "--json", "--character", "mandy"))
    assert job_ids(result) == set()
    assert "'Mandy'" in result.stderr and "names match exactly" in result.stderr
    typo = cli(*args(seeded, "list-stuck", "--character", "Mandyy"))
    assert typo.code == 0 and "near: 'Mandy'" in typo.stderr
    nothing = cli(*args(seeded, "list-stuck", "--character", "Zzyzx"))
    assert "near:" not in nothing.stderr and "no portrait job in the window" in nothing.stderr


def test_a_hostile_name_in_a_hint_cannot_drive_the_terminal(cli, seeded):
    # A user names a character with an escape sequence; a support engineer mistypes a nearby name.
    hostile = "Mandy\x1b[2J\x1b]8;;http://evil.example\x07"
    with seeded.connect() as conn:
        conn.execute(
            "insert into jobs (id, user_id, job_type, status, metadata, created_at) values (%s, %s, %s, %s, %s, now())",
            (uuid.uuid4(), ALICE, "image_high", "processing",
             Jsonb({"destination": "character_portrait", "characterName": hostile})),
        )
    result = cli(*args(seeded, "list-stuck", "--character", "Mandy\x1b[2J"))
    assert result.code == 0
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


def test_an_empty_character_is_bad_input(cli, seeded):
    # No character has an empty name: `--character ""` (an unset shell variable) is a mistake, not 0 jobs.
    result = cli(*args(seeded, "list-stuck", "--character", " "))
    assert result.code == 2 and result.stdout == "" and result.stderr.startswith("error: --character")

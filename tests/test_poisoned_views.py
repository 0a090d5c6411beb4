"""The read paths other commands added (`charfix user`, `report --user`, `list-stuck --summary` and
`--character`) meet the same poisoned rows as the scan (docs/reliability.md, "Poisoned rows"): a row
an app user planted costs its own line at most, never the command (exit 70)."""

from __future__ import annotations

import json

import pytest

from test_trust_boundary import POISONS, backend_args, plant_stuck_job

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def views(poisoned) -> list[list[str]]:
    user = str(poisoned.user)
    return [["user", user, "--json"], ["user", user], ["report", "--user", user],
            ["list-stuck", "--summary"], ["list-stuck", "--summary", "--json"],
            ["list-stuck", "--character", "Nobody"], ["list-stuck", "--all", "--user", user]]


@pytest.mark.parametrize("backend", ["postgres", "supabase"])
@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poisoned_row_never_stops_a_view(cli, seeded, request, backend, poison):
    with seeded.connect() as conn:
        plant_stuck_job(conn, seeded.storage, seeded.now)
        poisoned, _ = POISONS[poison](conn, seeded.storage, seeded.now)
    argv, env = backend_args(request, seeded, backend)
    for view in views(poisoned):
        result = cli(*argv, *view, env=env)
        assert result.code in (0, 1), (view, result.stderr)
        assert "Traceback" not in result.stderr, (view, result.stderr)


@pytest.mark.parametrize("backend", ["postgres", "supabase"])
def test_an_image_url_that_urllib_cannot_parse_costs_nothing(cli, seeded, request, backend):
    """A character's image_url is the user's text: `https://[oops` starts like a URL but urllib refuses
    it (ValueError). The scan, the repair and `charfix user` go on."""
    with seeded.connect() as conn:
        ordinary = plant_stuck_job(conn, seeded.storage, seeded.now)
        odd = plant_stuck_job(conn, seeded.storage, seeded.now)
        conn.execute("update characters set image_url = 'https://[oops/x.png' where id = %s", (odd.character,))
    argv, env = backend_args(request, seeded, backend)
    listed = cli(*argv, "list-stuck", "--json", env=env)
    assert listed.code == 0, listed.stderr
    by_job = {row["job_id"]: row for row in json.loads(listed.stdout)}
    assert by_job[str(ordinary.job)]["state"] == "repairable" and str(odd.job) in by_job
    for view in (["user", str(odd.user)], ["user", str(odd.user), "--json"]):
        shown = cli(*argv, *view, env=env)
        assert shown.code == 0, (view, shown.stderr)
    repaired = cli(*argv, "backfill-portraits", "--yes", "--json", env=env)
    assert repaired.code in (0, 1), repaired.stderr
    outcome = {job["job_id"]: job["outcome"] for job in json.loads(repaired.stdout)["jobs"]}
    assert outcome[str(ordinary.job)] == "repaired"


@pytest.mark.parametrize("backend", ["postgres", "supabase"])
@pytest.mark.parametrize("planted", ["-infinity", "0044-03-15 BC"])
def test_a_job_from_before_time_neither_stops_nor_hides_the_backlog_line(cli, seeded, request, backend, planted):
    """`list-stuck` says when its window hides old stuck jobs (repository open_before). A queued
    portrait job whose created_at Python cannot hold is the oldest of all: it must neither end the
    command (exit 70) nor blank the line about the jobs a person can see with a wider --since."""
    metadata = json.dumps({"destination": "character_portrait", "characterName": "Old"})
    with seeded.connect() as conn:
        conn.execute("insert into jobs (user_id, job_type, status, metadata, created_at) values "
                     "(gen_random_uuid(), 'image', 'queued', %s, %s)", (metadata, planted))
        conn.execute("insert into jobs (user_id, job_type, status, metadata, created_at) values "
                     "(gen_random_uuid(), 'image', 'processing', %s, now() - interval '30 days')", (metadata,))
    argv, env = backend_args(request, seeded, backend)
    listed = cli(*argv, "list-stuck", env=env)
    assert listed.code == 0, listed.stderr
    line = [text for text in listed.stderr.splitlines() if "hides" in text]
    assert len(line) == 1 and "hides 1 older portrait job(s)" in line[0] and "--since 31d" in line[0], listed.stderr

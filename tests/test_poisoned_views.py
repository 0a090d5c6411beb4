"""The read paths other commands added (`charfix user`, `report --user`, `list-stuck --summary` and
`--character`) meet the same poisoned rows as the scan (docs/reliability.md, "Poisoned rows"): a row
an app user planted costs its own line at most, never the command (exit 70)."""

from __future__ import annotations

import json

import pytest

from test_backends import key, server  # noqa: F401 (fixtures)
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

"""The read paths other commands added (`charfix user`, `report --user`, `list-stuck --summary` and
`--character`) meet the same poisoned rows as the scan (docs/reliability.md, "Poisoned rows"): a row
an app user planted costs its own line at most, never the command (exit 70)."""

from __future__ import annotations

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

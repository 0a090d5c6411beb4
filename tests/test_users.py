"""`--user EMAIL`: from the address on a support ticket to the user's id, over Postgres (auth.users)
and over REST (Supabase Auth's admin API, served by the test server as GoTrue serves it)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from charfix.demo.sample import ALICE, BEN, EMAILS
from charfix.errors import BackendError, NotFoundError, UsageError
from charfix.http import connect
from charfix.queries.users import resolve_user
from charfix.repository.auth_users import AdminApiUsers
from test_backends import FAST, postgres_backends, supabase_backends
from test_cli import args
from tests.supabase_server import make_service_key

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(params=["postgres", "supabase"])
def backends(request, seeded, key):
    if request.param == "postgres":
        made = postgres_backends(seeded)
    else:
        made = supabase_backends(request.getfixturevalue("server"), key)
    yield made
    made.repository.close()


def plant_users(seeded, users: list[tuple[uuid.UUID, str]]) -> None:
    """As sign-ups do: rows in auth.users (Auth itself writes them; an app user controls the email)."""
    with seeded.connect() as conn:
        for user_id, email in users:
            conn.execute("insert into auth.users (id, email) values (%s, %s)", (user_id, email))


def test_an_email_resolves_to_its_user_ignoring_case(backends):
    assert resolve_user(backends, "mandy@example.com") == ALICE
    assert resolve_user(backends, "  Mandy@Example.COM ") == ALICE
    assert resolve_user(backends, str(BEN)) == BEN


def test_unknown_and_ambiguous_emails_are_not_found(backends, seeded):
    # Two accounts whose emails differ only in case (an SSO user beside an email user).
    twins = [uuid.uuid4(), uuid.uuid4()]
    plant_users(seeded, [(twins[0], "twin@example.com"), (twins[1], "Twin@example.com")])
    with pytest.raises(NotFoundError, match="no user has the email nobody@example.com"):
        resolve_user(backends, "nobody@example.com")
    with pytest.raises(NotFoundError, match="belongs to 2 users") as raised:
        resolve_user(backends, "twin@example.com")
    assert all(str(t) in raised.value.message for t in twins)
    # A prefix is the hook's business, never guessed here.
    with pytest.raises(UsageError, match="neither a user id nor an email"):
        resolve_user(backends, "2d5f27cc")
    assert resolve_user(backends, "2d5f27cc", by_prefix=lambda text: ALICE) == ALICE


def test_the_admin_api_is_paged_to_its_end_and_read_once(server, seeded, key):
    many = [(uuid.uuid4(), f"user{n:03d}@example.com") for n in range(120)]
    plant_users(seeded, many)
    client = connect(server.url, key, retry=FAST, timeout=5)
    try:
        from charfix.http import Caller

        directory = AdminApiUsers(Caller(client, "Supabase Auth"), per_page=50)
        server.reset_counters()
        assert [u.id for u in directory.with_email("user000@example.com")] == [many[0][0]]
        assert [u.id for u in directory.with_email("USER119@example.com")] == [many[119][0]]
        assert directory.with_email("mandy@example.com")[0].id == ALICE
        total = len(many) + len(EMAILS)
        pages = [qs for method, path, qs in server.requests if path == "/auth/v1/admin/users"]
        assert len(pages) == -(-total // 50) == directory.pages_read == 3  # every page once, then cached
    finally:
        client.close()


def test_the_admin_api_refuses_the_anon_key_as_gotrue_does(server, seeded):
    anon = make_service_key(role="anon")
    url = f"{server.url}/auth/v1/admin/users"
    refused = httpx.get(url, headers={"apikey": anon, "Authorization": f"Bearer {anon}"})
    assert refused.status_code == 403 and refused.json()["error_code"] == "not_admin"
    assert httpx.get(url, headers={"apikey": anon}).status_code == 401
    assert httpx.get(url).status_code == 401
    service = make_service_key()
    answer = httpx.get(url, params={"page": 2, "per_page": 3}, headers={"apikey": service,
                                                                        "Authorization": f"Bearer {service}"})
    assert answer.status_code == 200 and len(answer.json()["users"]) == 1  # 4 demo users
    assert answer.headers["x-total-count"] == "4" and 'rel="next"' not in answer.headers["link"]
    # charfix with an anon key: one clear line, no traceback, through the backend error.
    client = connect(server.url, anon, retry=FAST, timeout=5)
    try:
        from charfix.http import Caller

        with pytest.raises(BackendError, match="refused \\(HTTP 403 not_admin"):
            AdminApiUsers(Caller(client, "Supabase Auth")).with_email("mandy@example.com")
    finally:
        client.close()


def test_the_cli_takes_an_email_over_postgres(cli, seeded):
    by_email = cli(*args(seeded, "list-stuck", "--all", "--json", "--user", "mandy@example.com"))
    by_id = cli(*args(seeded, "list-stuck", "--all", "--json", "--user", str(ALICE)))
    assert by_email.code == 0, by_email.stderr
    rows = json.loads(by_email.stdout)
    assert rows and rows == json.loads(by_id.stdout)
    assert {row["user_id"] for row in rows} == {str(ALICE)}
    unknown = cli(*args(seeded, "backfill-portraits", "--dry-run", "--user", "nobody@example.com"))
    assert unknown.code == 4
    assert unknown.stderr.splitlines()[0] == "error: no user has the email nobody@example.com"


def test_the_cli_takes_an_email_over_rest(cli, server, seeded, key):
    plant_users(seeded, [(uuid.uuid4(), "twin@example.com"), (uuid.uuid4(), "TWIN@example.com")])
    env = {"SUPABASE_URL": server.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    result = cli("--storage-dir", str(seeded.storage), "list-stuck", "--all", "--json", "--user", "ben@example.com",
                 env=env)
    assert result.code == 0, result.stderr
    assert {row["user_id"] for row in json.loads(result.stdout)} == {str(BEN)}
    ambiguous = cli("list-stuck", "--user", "twin@example.com", env=env)
    assert ambiguous.code == 4 and "belongs to 2 users" in ambiguous.stderr
    assert "Traceback" not in ambiguous.stderr and key not in ambiguous.stderr

"""Supabase Auth's users, looked up by email: over Postgres in `auth.users`, over REST through Auth's
admin API (`GET /auth/v1/admin/users`, paged, service role key only; docs/backends.md). Each adapter
returns its directory from `users()`; `queries/users.py` resolves `--user EMAIL` through it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from charfix.errors import BackendError
from charfix.repository.base import User

if TYPE_CHECKING:
    import httpx

ADMIN_USERS_PATH = "/auth/v1/admin/users"
PER_PAGE = 500
MAX_PAGES = 10_000  # 5 million users: a Link header that never ends stops here, not never


@dataclass
class PostgresUsers:
    conn: Any
    cache: dict[str, list[User]] = field(default_factory=dict)

    def with_email(self, email: str) -> list[User]:
        key = email.lower()
        if key not in self.cache:
            self.cache[key] = self._query(key)
        return self.cache[key]

    def _query(self, email: str) -> list[User]:
        import psycopg

        try:
            rows = self.conn.execute(
                "select id, email from auth.users where lower(email) = %s order by id", (email,)
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            raise BackendError("the database has no auth.users table, so emails cannot be looked up; give the user id") from None
        except psycopg.errors.InsufficientPrivilege:
            raise BackendError("the database user may not read auth.users; give the user id, or connect as postgres") from None
        except psycopg.Error as exc:
            raise BackendError(f"cannot read auth.users: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        return [User(id=_row_value(row, "id", 0), email=_row_value(row, "email", 1)) for row in rows]


def _row_value(row: Any, name: str, index: int) -> Any:
    return row[name] if isinstance(row, dict) else row[index]


@dataclass
class AdminApiUsers:
    """Auth's admin API, read to its end once: it pages by `page`/`per_page`, says the total in
    `X-Total-Count` and the next page in `Link` (as GoTrue's pagination does)."""

    caller: Any
    per_page: int = PER_PAGE
    by_email: dict[str, list[User]] | None = None
    pages_read: int = 0

    def with_email(self, email: str) -> list[User]:
        if self.by_email is None:
            self.by_email = self._read_all()
        return self.by_email.get(email.lower(), [])

    def _read_all(self) -> dict[str, list[User]]:
        found: dict[str, list[User]] = {}
        seen: set[UUID] = set()
        page = 1
        while page <= MAX_PAGES:
            users, total, has_next = self._page(page)
            self.pages_read += 1
            for user in users:
                if user.id in seen:  # a user signing up meanwhile shifts the pages by one
                    continue
                seen.add(user.id)
                if user.email:
                    found.setdefault(user.email.lower(), []).append(user)
            last_page = math.ceil(total / self.per_page) if total is not None else None
            if not users or not has_next or (last_page is not None and page >= last_page):
                break
            page += 1
        return found

    def _page(self, page: int) -> tuple[list[User], int | None, bool]:
        supabase = self.caller.supabase
        url = f"{supabase.url}{ADMIN_USERS_PATH}"
        params = {"page": str(page), "per_page": str(self.per_page)}
        response = self.caller.send(
            "admin users", lambda: supabase.http.get(url, params=params, headers=supabase.auth_headers())
        )
        if response.status_code in (401, 403):
            raise BackendError(
                f"Supabase Auth: listing users was refused (HTTP {response.status_code}{_auth_error(response)})",
                hint="emails are looked up through the admin API, which only the service role key may read; "
                "or give the user id",
            )
        if not response.is_success:
            raise self.caller.fail("admin users", response)
        try:
            body = response.json()
        except ValueError:
            raise BackendError("Supabase Auth: the admin users answer is not JSON") from None
        rows = body.get("users") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise BackendError("Supabase Auth: the admin users answer has no 'users' list")
        return [u for row in rows if (u := _user(row)) is not None], _total(response), _has_next(response)


def _user(row: Any) -> User | None:
    """A row that is not a user with a valid id is skipped: it cannot be matched to jobs anyway."""
    if not isinstance(row, dict):
        return None
    try:
        user_id = UUID(str(row.get("id")))
    except ValueError:
        return None
    email = row.get("email")
    return User(id=user_id, email=email if isinstance(email, str) else None)


def _total(response: httpx.Response) -> int | None:
    try:
        return int(response.headers.get("x-total-count", ""))
    except ValueError:
        return None


def _has_next(response: httpx.Response) -> bool:
    return bool(re.search(r'rel="?next"?', response.headers.get("link", "")))


def _auth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code = body.get("error_code") or body.get("code")
    message = body.get("msg") or body.get("message")
    return "".join(part for part in (f" {code}" if code else "", f": {message}" if message else ""))[:200]

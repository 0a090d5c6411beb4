"""Who a support ticket is about: `--user` as a full id or an email address (prefixes: a hook).

Tickets arrive with an email address, not a user id. Emails live in Supabase Auth, not in the four
tables: over Postgres in `auth.users`, over REST behind Auth's admin API (`GET /auth/v1/admin/users`,
paged, service role key only; docs/backends.md). The REST answer is read once per run and kept.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from charfix.errors import BackendError, NotFoundError, UsageError
from charfix.backends import Backends

ADMIN_USERS_PATH = "/auth/v1/admin/users"
PER_PAGE = 500
MAX_PAGES = 10_000  # 5 million users: a Link header that never ends stops here, not never
SHOWN_LIMIT = 60


@dataclass(frozen=True)
class User:
    id: UUID
    email: str | None


class UserDirectory(Protocol):
    def with_email(self, email: str) -> list[User]:
        """Every user whose email equals `email`, ignoring case (Auth stores emails lower-case;
        older rows and SSO users may differ only in case)."""
        ...


def looks_like_email(text: str) -> bool:
    return "@" in text


def resolve_user(backends: Backends, text: str, *, by_prefix: Callable[[str], UUID] | None = None) -> UUID:
    """A full user id as given, an email looked up in Auth, else `by_prefix(text)` when given.
    An unknown or ambiguous email is NotFoundError (exit 4). Commands pass `user_by_prefix`."""
    text = text.strip()
    if looks_like_email(text):
        return _by_email(directory_for(backends), text)
    try:
        return UUID(text)
    except ValueError:
        pass
    if by_prefix is not None:
        return by_prefix(text)
    raise UsageError(f"--user: '{_shown(text)}' is neither a user id nor an email address")


def user_by_prefix(backends: Backends) -> Callable[[str], UUID]:
    """The hook for a user id prefix of 8+ characters, as list-stuck shows users (docs/commands.md, "Ids")."""
    from charfix.parsing import parse_user_ref
    from charfix.queries.selection import resolve_user as among_jobs

    def lookup(text: str) -> UUID:
        try:
            ref = parse_user_ref(text)
        except UsageError:
            raise UsageError(f"'{_shown(text)}' is neither a user id nor an email address: give the whole id, "
                             "its first 8 or more characters, or the email") from None
        return among_jobs(ref, lambda: backends)

    return lookup


def _by_email(directory: UserDirectory, email: str) -> UUID:
    found = directory.with_email(email)
    if not found:
        raise NotFoundError(f"no user has the email {_shown(email)}",
                            hint="check the spelling; an email is matched whole, ignoring case")
    if len(found) > 1:
        ids = ", ".join(str(u.id) for u in found[:3])
        raise NotFoundError(f"the email {_shown(email)} belongs to {len(found)} users ({ids}); give the user id instead")
    return found[0].id


def _shown(text: str) -> str:
    from charfix.ui.safe import terminal_excerpt  # docs/reliability.md, "What reaches the terminal"

    return terminal_excerpt(text, SHOWN_LIMIT, marker="...")


# -- the directories -------------------------------------------------------------------------------

_directories: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def directory_for(backends: Backends) -> UserDirectory:
    """The directory behind the backends' repository, one per repository: its answers are kept for the run."""
    repository = backends.repository
    directory = _directories.get(repository)
    if directory is None:
        directory = _build(repository)
        _directories[repository] = directory
    return directory


def _build(repository: Any) -> UserDirectory:
    conn = getattr(repository, "conn", None)
    if conn is not None:
        return PostgresUsers(conn)
    supabase = getattr(repository, "supabase", None)
    if supabase is not None:
        from charfix.backends.http import Caller

        return AdminApiUsers(Caller(supabase, "Supabase Auth"))
    raise BackendError("this backend cannot look users up by email; give the user id")


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


def _total(response) -> int | None:
    try:
        return int(response.headers.get("x-total-count", ""))
    except ValueError:
        return None


def _has_next(response) -> bool:
    return bool(re.search(r'rel="?next"?', response.headers.get("link", "")))


def _auth_error(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    code = body.get("error_code") or body.get("code")
    message = body.get("msg") or body.get("message")
    return "".join(part for part in (f" {code}" if code else "", f": {message}" if message else ""))[:200]


# -- the command line ------------------------------------------------------------------------------


def user_option(runtime, text: str | None) -> str | None:
    """`--user` for the selection: an email becomes the user's id; anything else is passed on as
    typed, for the selection to parse (a full id, or an id prefix)."""
    if text is None or not looks_like_email(text):
        return text
    return str(resolve_user(runtime.backends(), text))

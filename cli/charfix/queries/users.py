"""Who a support ticket is about: `--user` as a full id or an email address (prefixes: a hook).

Tickets arrive with an email address, not a user id. Emails live in Supabase Auth, not in the four
tables: over Postgres in `auth.users`, over REST behind Auth's admin API (`GET /auth/v1/admin/users`,
paged, service role key only; docs/backends.md). The REST answer is read once per run and kept.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from uuid import UUID

from charfix.errors import NotFoundError, UsageError
from charfix.backends import Backends
from charfix.repository.base import Reader, UserDirectory

SHOWN_LIMIT = 60


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


def _build(repository: Reader) -> UserDirectory:
    return repository.users()


# -- the command line ------------------------------------------------------------------------------


def user_option(runtime, text: str | None) -> str | None:
    """`--user` for the selection: an email becomes the user's id; anything else is passed on as
    typed, for the selection to parse (a full id, or an id prefix)."""
    if text is None or not looks_like_email(text):
        return text
    return str(resolve_user(runtime.backends(), text))

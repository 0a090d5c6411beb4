"""Reads of one user's characters and library rows, for `charfix user` (both adapters).

Kept beside the adapters rather than in them while the repository interface is being reshaped;
they use each adapter's own plumbing (columns as read from the live schema, paging, errors).
"""

from __future__ import annotations

from uuid import UUID

from charfix.diagnosis import facts as f
from charfix.models import PORTRAIT, Character, LibraryItem
from charfix.repository.rows import read_rows


def characters_of(repository, user_id: UUID) -> list[Character]:
    """Every character the user owns, oldest first."""
    if hasattr(repository, "conn"):
        from psycopg import sql

        statement = sql.SQL("select {cols} from characters where user_id = %(user)s order by created_at, id").format(
            cols=repository._columns("characters"))
        return repository._fetch(Character, statement, {"user": user_id})
    from charfix.repository.supabase import _in_filter

    rows = repository._read_chunked("characters", [("user_id", str(user_id))], _in_filter)
    characters = read_rows(Character, rows)  # a planted row costs its own line (repository/rows.py)
    return sorted(characters, key=lambda c: (c.created_at, c.id))


def library_portraits_of(repository, user_id: UUID) -> list[LibraryItem]:
    """The user's library rows that the Library's Characters tab shows (facts.is_visible), oldest first."""
    if hasattr(repository, "conn"):
        from psycopg import sql

        statement = sql.SQL(
            "select {cols} from user_library where user_id = %(user)s and (roleplay_metadata->>'type' = %(portrait)s "
            "or 'character' = any(tags) or content_category = 'character') order by created_at, id"
        ).format(cols=repository._columns("user_library"))
        items = repository._fetch(LibraryItem, statement, {"user": user_id, "portrait": PORTRAIT})
    else:
        from charfix.repository.supabase import _in_filter

        rows = repository._read_chunked("user_library", [("user_id", str(user_id))], _in_filter)
        items = read_rows(LibraryItem, rows)
    # Python decides, over both adapters: the SQL above only narrows what is sent.
    return sorted((i for i in items if f.is_visible(i)), key=lambda i: (i.created_at, i.id))

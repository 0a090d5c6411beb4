"""The storage catalogue as Supabase keeps it: one row per object in `storage.objects`, in the project's
own database (docs/backends.md, "The storage catalogue").

Supabase Storage answers every listing from that table (its `storage.search` is a query on it), so
with a database URL the scan reads a page's objects with one statement per bucket instead of one
Storage listing per user folder and bucket. Only the reads the scan makes come from here; whatever a
repair is about to copy or overwrite is confirmed through the Storage API inside the job's lock
(repair/steps.py).

The rows are input from strangers like any listing: a name is used only when it is a plain key
(diagnosis/keys.py) directly inside the folder asked for, exactly (a listing through the API is
case-insensitive on the folder; the table is not, and neither is a local folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg import sql

from charfix.diagnosis.keys import key_problem
from charfix.errors import BackendError
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET, StoredObject
from charfix.repository.postgres import PostgresRepository
from charfix.storage.supabase import MD5_ETAG, listed_time

DESCRIPTION = "storage.objects through the database"
Read = Callable[[sql.Composed | sql.SQL, dict[str, Any]], list[dict[str, Any]]]  # a statement's rows as dicts
NEEDED_COLUMNS = ("bucket_id", "name", "metadata", "updated_at")
# Object versioning (supabase/storage, 2026) keeps older versions and delete markers as rows: only the
# current version of a key is the object a listing shows.
VERSION_FILTERS = {"archived_at": "{o}.archived_at is null", "is_delete_marker": "not {o}.is_delete_marker"}
# One range per prefix on the (bucket_id, name COLLATE "C") index that Supabase keeps on storage.objects.
BY_PREFIX = """
select o.name, o.updated_at, o.metadata->>'size' as size, o.metadata->>'contentLength' as length,
       o.metadata->>'eTag' as etag, o.metadata->>'lastModified' as modified
from unnest(%(low)s::text[], %(high)s::text[]) as p(low, high)
join storage.objects o on o.bucket_id = %(bucket)s
 and o.name collate "C" >= p.low collate "C" and o.name collate "C" < p.high collate "C"
where position('/' in substr(o.name, length(p.low) + 1)) = 0 {versions}
"""
BY_KEY = """
select o.name, o.updated_at, o.metadata->>'size' as size, o.metadata->>'contentLength' as length,
       o.metadata->>'eTag' as etag, o.metadata->>'lastModified' as modified
from storage.objects o where o.bucket_id = %(bucket)s and o.name = any(%(keys)s::text[]) {versions}
"""


class DatabaseCatalogue:
    """`list_prefixes` and `stat` (the scan's reads of storage) from storage.objects, through the
    repository's own connection: inside a repair's transaction it reads what that transaction sees."""

    description = DESCRIPTION

    def __init__(self, repository: PostgresRepository, *, versioned: frozenset[str] = frozenset()):
        self.repository = repository
        self.versioned = versioned
        self.queries = 0

    @classmethod
    def open(cls, repository: PostgresRepository) -> tuple[DatabaseCatalogue | None, str]:
        """The catalogue when the database holds one this role reads whole, else None; and why."""
        try:
            why = unusable(repository.read)
        except BackendError as exc:  # a role without the privileges the checks read: the listings then
            return None, f"storage.objects could not be checked ({exc.message})"
        if why is not None:
            return None, why
        columns = _columns(repository.read)
        return cls(repository, versioned=frozenset(c for c in VERSION_FILTERS if c in columns)), DESCRIPTION

    def list_prefixes(self, bucket: str, prefixes: Sequence[str]) -> list[StoredObject]:
        wanted = sorted({p for p in prefixes if _plain_prefix(p)})
        if not wanted:
            return []
        rows = self._rows(BY_PREFIX, {"bucket": bucket, "low": wanted, "high": [_after(p) for p in wanted]})
        return [obj for row in rows if (obj := _object(bucket, row)) is not None]

    def stat(self, bucket: str, keys: Sequence[str]) -> list[StoredObject]:
        wanted = sorted({k for k in keys if key_problem(k) is None})
        if not wanted:
            return []
        found = [obj for row in self._rows(BY_KEY, {"bucket": bucket, "keys": wanted})
                 if (obj := _object(bucket, row)) is not None]
        return sorted(found, key=lambda o: o.key)

    def _rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.queries += 1
        return self.repository.read(sql.SQL(query).format(versions=sql.SQL(self.current("o"))), params)

    def current(self, alias: str) -> str:
        """`and ...` conditions that keep only current versions of the objects aliased `alias`."""
        return "".join(" and " + VERSION_FILTERS[c].format(o=alias) for c in sorted(self.versioned))


def unusable(read: Read) -> str | None:
    """Why storage.objects cannot stand for the Storage listings here, or None. A role that row-level
    security leaves blind would read an empty table, and every portrait as lost: like an empty
    listing, an empty catalogue is evidence only once the role is established (docs/backends.md)."""
    columns = _columns(read)
    if not columns:
        return "the database has no storage.objects table (not a Supabase project's database)"
    missing = [c for c in NEEDED_COLUMNS if c not in columns]
    if missing:
        return f"storage.objects lacks column(s) {', '.join(missing)}"
    if not read(sql.SQL("select to_regclass('storage.buckets') is not null as there"), {})[0]["there"]:
        return "the database has no storage.buckets table (not a Supabase project's database)"
    row = read(sql.SQL(
        "select has_table_privilege('storage.objects', 'select') as can_read, "
        "(select rolsuper or rolbypassrls from pg_roles where rolname = current_user) as bypasses, "
        "(select not c.relrowsecurity or (pg_get_userbyid(c.relowner) = current_user and not c.relforcerowsecurity) "
        " from pg_class c where c.oid = 'storage.objects'::regclass) as unguarded, "
        "(select count(*) from storage.buckets where id = any(%(buckets)s)) as buckets"), {
        "buckets": [WORKSPACE_BUCKET, LIBRARY_BUCKET]})[0]
    if not row["can_read"]:
        return "this database role may not read storage.objects"
    if not (row["bypasses"] or row["unguarded"]):
        return "row-level security on storage.objects would hide objects from this database role"
    if row["buckets"] != 2:
        return f"storage.buckets lacks {WORKSPACE_BUCKET} or {LIBRARY_BUCKET}"
    return None


def probe(url: str) -> str | None:
    """`unusable` on a connection of its own (for `doctor`); a database that cannot be asked says so."""
    import psycopg
    from psycopg.rows import dict_row

    try:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10) as conn:
            return unusable(lambda statement, params: conn.execute(statement, params).fetchall())
    except psycopg.errors.InsufficientPrivilege:
        return "this database role may not read storage.objects"
    except psycopg.Error:
        # Never the error's text: libpq quotes a connection string it cannot parse, password included.
        return "the database could not be asked about storage.objects"


def _columns(read: Read) -> set[str]:
    rows = read(sql.SQL(
        "select column_name from information_schema.columns where table_schema = 'storage' "
        "and table_name = 'objects'"), {})
    return {row["column_name"] for row in rows}


def _plain_prefix(prefix: str) -> bool:
    """`folder/name-start`, as the scan builds them from ids: anything else is asked of nobody."""
    folder, _, start = prefix.rpartition("/")
    return bool(folder and start) and key_problem(prefix) is None


def _after(prefix: str) -> str:
    """The first string after every string that starts with `prefix`, in byte order (ASCII keys)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _object(bucket: str, row: dict[str, Any]) -> StoredObject | None:
    key = row["name"]
    if not isinstance(key, str) or key_problem(key) is not None:
        return None  # a key Storage would not serve (an older server's, or a planted row): evidence of nothing
    updated = row["updated_at"] if isinstance(row["updated_at"], datetime) else listed_time(row["modified"])
    return StoredObject(bucket=bucket, key=key, size=_size(row["size"], row["length"]), updated_at=updated,
                        content_md5=_md5(row["etag"]))


def _md5(etag: str | None) -> str | None:
    """The content's MD5 when the eTag is one, as storage/supabase.py reads a listing's."""
    match = MD5_ETAG.fullmatch(etag) if isinstance(etag, str) else None
    return match.group(1).lower() if match else None


def _size(size: str | None, length: str | None) -> int:
    """metadata.size, else contentLength, as a listing's `_object` reads them; anything else is 0."""
    for text in (size, length):
        if text is None:
            continue
        try:
            value = int(float(text)) if "." in text or "e" in text.lower() else int(text)
        except (ValueError, OverflowError):
            return 0
        return max(value, 0)
    return 0

"""The repository over a direct Postgres connection (psycopg 3).

Every read is one statement per page of jobs, whatever the page size: the batching the support
tool needs on a `jobs` table that grows by every generation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import abc, pq, sql
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from pydantic import BaseModel

from charfix.errors import BackendError, ConnectionLostError
from charfix.diagnosis import portrait
from charfix.diagnosis.facts import normalized_name
from charfix.models import PORTRAIT, Character, Job, LibraryItem, WorkspaceAsset
from charfix.repository.base import (
    EARLIEST, OPEN_STATUSES, REQUIRED_COLUMNS, Backlog, JobQuery, Page, Schema, UserDirectory, prefix_range,
)
from charfix.repository.rows import Unreadable, db_time, load_json, read_rows
from charfix.repository.writes import PostgresWrites, query

M = TypeVar("M", bound=BaseModel)

# Mirrors charfix.diagnosis.facts.normalized_name closely enough to fetch a superset; Python filters again.
NORMALIZED_NAME = "lower(regexp_replace(name, '\\s', '', 'g'))"


class PostgresRepository(PostgresWrites):
    def __init__(self, conn: psycopg.Connection[dict[str, Any]], *, schema_name: str = "public"):
        self.conn = conn
        _read_defensively(conn)
        self.schema_name = schema_name
        self.queries = 0
        self.schema = Schema.from_columns(self._live_columns())

    @classmethod
    def connect(cls, url: str, *, connect_timeout: int = 10) -> PostgresRepository:
        try:
            conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=connect_timeout)
        except psycopg.ProgrammingError as exc:
            # libpq quotes the whole URL, password included, when it cannot parse it.
            raise BackendError("the database URL is not a valid connection string",
                               hint="check SUPABASE_DB_URL / --db-url (postgresql://user:password@host:5432/db)") from exc
        except psycopg.Error as exc:
            raise BackendError(f"cannot connect to the database: {_first_line(exc)}") from exc
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    # -- reads ---------------------------------------------------------------------------------

    def portrait_jobs(self, query: JobQuery, *, after: Page | None, limit: int) -> list[Job]:
        where = [
            sql.SQL("created_at >= %(since)s"),
            sql.SQL("(metadata->>'destination' = %(portrait)s or metadata->>'source' = %(portrait)s)"),
        ]
        params: dict[str, Any] = {"since": query.since, "portrait": PORTRAIT, "limit": limit}
        if query.user_id is not None:
            where.append(sql.SQL("user_id = %(user_id)s"))
            params["user_id"] = query.user_id
        if after is not None:
            where.append(sql.SQL("(created_at, id) > (%(after_at)s::timestamptz, %(after_id)s)"))
            # A job whose created_at Python cannot hold (infinity) read as the end of time.
            params.update(after_at=db_time(after.created_at), after_id=after.id)
        statement = sql.SQL("select {cols} from jobs where {where} order by created_at, id limit %(limit)s").format(
            cols=self._columns("jobs"), where=sql.SQL(" and ").join(where)
        )
        return self._fetch(Job, statement, params)

    def open_before(self, query: JobQuery) -> Backlog:
        # The app's partial index on (status, created_at) for queued/processing serves this.
        statement = sql.SQL(
            "select count(*) as count, min(created_at) as oldest from jobs where status = any(%(open)s) "
            "and created_at < %(since)s and created_at >= %(earliest)s "
            "and (metadata->>'destination' = %(portrait)s or metadata->>'source' = %(portrait)s)"
            "{user}"
        ).format(user=sql.SQL(" and user_id = %(user_id)s") if query.user_id is not None else sql.SQL(""))
        params = {"open": list(OPEN_STATUSES), "since": query.since, "portrait": PORTRAIT, "user_id": query.user_id,
                  "earliest": EARLIEST}
        row = self._rows(statement, params)[0]
        return Backlog(count=row["count"], oldest=row["oldest"])

    def jobs_by_id(self, ids: Sequence[UUID]) -> list[Job]:
        statement = sql.SQL("select {cols} from jobs where id = any(%(ids)s) order by created_at, id").format(
            cols=self._columns("jobs")
        )
        return self._fetch(Job, statement, {"ids": list(ids)})

    def jobs_naming(self, names: Sequence[tuple[UUID, str]], *, since: datetime, until: datetime) -> list[Job]:
        if not names:
            return []
        statement = sql.SQL(
            "select {cols} from jobs where user_id = any(%(users)s) and created_at between %(since)s and %(until)s "
            "and (metadata->>'destination' = %(portrait)s or metadata->>'source' = %(portrait)s) "
            "and (metadata->>'character_name' = any(%(names)s) or metadata->>'characterName' = any(%(names)s))"
        ).format(cols=self._columns("jobs"))
        params = {"users": sorted({u for u, _ in names}), "names": sorted({n for _, n in names}), "since": since,
                  "until": until, "portrait": PORTRAIT}
        return self._fetch(Job, statement, params)

    def job_ids_starting(self, prefix: str, *, limit: int) -> list[UUID]:
        statement = sql.SQL("select id from jobs where id::text like %(pattern)s order by id limit %(limit)s")
        return [row["id"] for row in self._rows(statement, {"pattern": prefix + "%", "limit": limit})]

    def ids_sharing_prefixes(self, column: str, ids: Sequence[UUID]) -> list[UUID]:
        if not ids:
            return []
        # Ranges, not `::text like`: the primary key's index answers a range; a cast reads every row.
        ranges = sorted({prefix_range(str(i)[:8]) for i in ids})
        statement = sql.SQL(
            "select distinct j.{col} as id from jobs j join unnest(%(lo)s::uuid[], %(hi)s::uuid[]) as r(lo, hi) "
            "on j.{col} between r.lo and r.hi"
        ).format(col=sql.Identifier(column))
        params = {"lo": [lo for lo, _ in ranges], "hi": [hi for _, hi in ranges]}
        return [row["id"] for row in self._rows(statement, params)]

    def user_ids_starting(self, prefix: str, *, limit: int) -> list[UUID]:
        bounds = prefix_range(prefix)
        statement = sql.SQL("select distinct user_id from jobs where user_id between %(lo)s and %(hi)s "
                            "order by user_id limit %(limit)s")
        return [row["user_id"] for row in self._rows(statement, {"lo": bounds[0], "hi": bounds[1], "limit": limit})]

    def assets_for(self, job_ids: Sequence[UUID]) -> list[WorkspaceAsset]:
        if not job_ids:
            return []
        statement = sql.SQL("select {cols} from workspace_assets where job_id = any(%(ids)s)").format(
            cols=self._columns("workspace_assets")
        )
        return self._fetch(WorkspaceAsset, statement, {"ids": list(job_ids)})

    def library_items_for(self, jobs: Sequence[Job], assets: Sequence[WorkspaceAsset]) -> list[LibraryItem]:
        if not jobs:
            return []
        matches = [
            _member(sql.SQL("split_part(split_part(storage_path, '.', 1), '_', 1)"), "heads", "text"),
            _member(sql.SQL("roleplay_metadata->>'job_id'"), "job_ids", "text"),
        ]
        if self.schema.has("user_library", "generation_metadata"):
            matches.append(_member(sql.SQL("generation_metadata->>'job_id'"), "job_ids", "text"))
        statement = sql.SQL("select {cols} from user_library where {users} and ({match})").format(
            cols=self._columns("user_library"), users=_member(sql.Identifier("user_id"), "users", "uuid"),
            match=sql.SQL(" or ").join(matches),
        )
        params = {
            "users": sorted({j.user_id for j in jobs}),
            # A key names its job ({user}/{job}_...) or, after a manual "save to library", its asset
            # ({user}/{asset}.png). Both are what comes before the key's first '.' and '_' (ids have
            # neither): one test per row instead of two, for a superset that facts.job_rows narrows.
            "heads": sorted({f"{j.user_id}/{j.id}" for j in jobs} | {f"{a.user_id}/{a.id}" for a in assets}),
            "job_ids": [str(j.id) for j in jobs],
        }
        return self._fetch(LibraryItem, statement, params)

    def characters_for(self, ids: Sequence[UUID], names: Sequence[tuple[UUID, str]]) -> list[Character]:
        if not ids and not names:
            return []
        # The user filter first, so Postgres can use an index on user_id before normalizing names.
        statement = sql.SQL(
            "select {cols} from characters where {by_id} or ({by_user} and "
            "(user_id, {norm}) in (select * from unnest(%(users)s::uuid[], %(names)s::text[])))"
        ).format(cols=self._columns("characters"), norm=sql.SQL(NORMALIZED_NAME),
                 by_id=_member(sql.Identifier("id"), "ids", "uuid"),
                 by_user=_member(sql.Identifier("user_id"), "owners", "uuid"))
        params = {
            "ids": list(ids),
            "owners": sorted({user for user, _ in names}),
            "users": [user for user, _ in names],
            "names": [normalized_name(name) for _, name in names],
        }
        return self._fetch(Character, statement, params)

    def characters_of(self, user_id: UUID) -> list[Character]:
        statement = sql.SQL("select {cols} from characters where user_id = %(user)s order by created_at, id").format(
            cols=self._columns("characters"))
        return self._fetch(Character, statement, {"user": user_id})

    def library_portraits_of(self, user_id: UUID) -> list[LibraryItem]:
        # Narrows what is sent; portrait.is_visible decides, as over REST.
        statement = sql.SQL(
            "select {cols} from user_library where user_id = %(user)s and (roleplay_metadata->>'type' = %(portrait)s "
            "or %(tag)s = any(tags) or content_category = %(category)s) order by created_at, id"
        ).format(cols=self._columns("user_library"))
        params = {"user": user_id, "portrait": PORTRAIT, "tag": portrait.VISIBLE_TAG, "category": portrait.CATEGORY}
        items = self._fetch(LibraryItem, statement, params)
        return sorted((i for i in items if portrait.is_visible(i)), key=lambda i: (i.created_at, i.id))

    def users(self) -> UserDirectory:
        from charfix.repository.auth_users import PostgresUsers

        return PostgresUsers(self.conn)

    def location(self) -> str:
        info = self.conn.info
        return f"postgresql://{info.host}:{info.port}/{info.dbname}"

    def read(self, statement: sql.Composed | sql.SQL, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of a read outside the four tables (storage/catalogue.py), with the same error handling."""
        return self._rows(statement, params)

    # -- plumbing ------------------------------------------------------------------------------

    def _live_columns(self) -> dict[str, set[str]]:
        rows = self._rows(
            sql.SQL(
                "select table_name, column_name from information_schema.columns "
                "where table_schema = %(schema)s and table_name = any(%(tables)s)"
            ),
            {"schema": self.schema_name, "tables": list(REQUIRED_COLUMNS)},
        )
        live: dict[str, set[str]] = {}
        for row in rows:
            live.setdefault(row["table_name"], set()).add(row["column_name"])
        return live

    def _columns(self, table: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(c) for c in self.schema.readable(table))

    def _fetch(self, model: type[M], statement: sql.Composable, params: dict[str, Any]) -> list[M]:
        return read_rows(model, self._rows(statement, params))

    def _rows(self, statement: sql.Composable, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._errors():
            self.queries += 1
            return self.conn.execute(query(statement), params).fetchall()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            if self.conn.broken or self.conn.closed:
                raise ConnectionLostError(
                    f"the database connection was lost ({_first_line(exc)}); finished jobs are in the audit log; "
                    "run again to finish the rest"
                ) from exc
            raise BackendError(f"database error: {_first_line(exc)}") from exc


def _read_defensively(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """Values psycopg would raise on (a jsonb nested 1,000 deep, a 5,000-digit number, an `infinity`
    timestamp) load as Unreadable instead, for repository/rows.py to pin on their row alone."""
    set_json_loads(load_json, conn)
    for name in ("timestamptz", "timestamp", "date"):
        info = conn.adapters.types.get(name)
        if info is None:
            continue
        inner = conn.adapters.get_loader(info.oid, pq.Format.TEXT)
        if inner is not None:
            conn.adapters.register_loader(info.oid, _guarded(inner))


def _guarded(inner: type[abc.Loader]) -> type[Loader]:
    class Guarded(Loader):
        def __init__(self, oid: int, context: abc.AdaptContext | None = None):
            super().__init__(oid, context)
            self.inner = inner(oid, context)

        def load(self, data: abc.Buffer) -> Any:
            try:
                return self.inner.load(data)
            except psycopg.DataError:  # infinity, or a year Python cannot hold
                return Unreadable(f"{bytes(data).decode('ascii', 'replace')[:40]} is out of range")

    return Guarded


def _member(expression: sql.Composable, param: str, kind: str) -> sql.Composable:
    """`expression in (the array)`, written so Postgres hashes the array once per query: with
    `= any(array)` it compares every row with every element, which is slow on pages of thousands of jobs."""
    return sql.SQL("{e} in (select unnest(%({p})s::{k}[]))").format(e=expression, p=sql.SQL(param), k=sql.SQL(kind))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

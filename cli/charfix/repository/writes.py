"""Writes over Postgres. Each is conditional on what was read, so a row someone else changed in the
meantime is never overwritten: the write matches nothing and raises ChangedError instead."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from charfix.errors import BackendError, ChangedError
from charfix.diagnosis.portrait import LibraryUpgrade, NewLibraryItem
from charfix.models import Character, Job, LibraryItem
from charfix.repository.base import Schema

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
NO_CONDITION = sql.SQL("")  # _update_job's `extra` when the update has no condition beyond the row as read


class PostgresWrites:
    """Mixed into PostgresRepository; uses its connection, schema and statement helpers (declared
    here, defined there)."""

    transactional = True  # a job's row writes commit together when its lock is released
    conn: psycopg.Connection[dict[str, Any]]
    schema: Schema
    queries: int

    def _columns(self, table: str) -> sql.Composable:
        raise NotImplementedError

    def _fetch(self, model: type[M], statement: sql.Composable, params: dict[str, Any]) -> list[M]:
        raise NotImplementedError

    def _errors(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    @contextmanager
    def locked(self, job_id: UUID) -> Iterator[bool]:
        """One transaction for the job's row writes, holding its row lock. Yields False, without
        waiting, when another run holds it (SKIP LOCKED); the caller then leaves the job alone."""
        with self._errors(), self.conn.transaction():
            self.queries += 1
            row = self.conn.execute("select id from jobs where id = %s for update skip locked", (job_id,)).fetchone()
            yield row is not None

    @contextmanager
    def locked_jobs(self, job_ids: Sequence[UUID]) -> Iterator[list[Job]]:
        """One transaction for a page of jobs. Yields the jobs as stored whose row locks it took;
        a job another run holds is left out, without waiting (SKIP LOCKED)."""
        statement = sql.SQL(
            "select {cols} from jobs where id = any(%(ids)s) order by created_at, id for update skip locked"
        ).format(cols=self._columns("jobs"))
        with self._errors(), self.conn.transaction():
            yield self._fetch(Job, statement, {"ids": list(job_ids)})

    def pages(self) -> PostgresWrites:
        """Pages of jobs in one transaction, a savepoint each: Postgres has both."""
        return self

    def connection(self) -> psycopg.Connection[dict[str, Any]]:
        return self.conn

    def transaction_id(self) -> int | None:
        """The id of the transaction in flight, recorded with its audit lines (docs/repairs.md)."""
        with self._errors():
            row = self.conn.execute("select txid_current() as xid").fetchone()
        return int(row["xid"]) if row is not None else None

    def transaction_status(self, xids: Sequence[int]) -> dict[int, str | None]:
        """What became of earlier transactions: committed, aborted, in progress, or None when Postgres
        no longer knows (too old) or never did (an id from another database)."""
        found: dict[int, str | None] = {}
        for xid in xids:
            try:
                with self._errors():
                    row = self.conn.execute("select txid_status(%s) as status", (xid,)).fetchone()
                found[xid] = row["status"] if row is not None else None
            except BackendError:
                found[xid] = None
        return found

    def lock_characters(self, ids: Sequence[UUID]) -> list[Character]:
        """Inside `locked_jobs`: lock the characters the page will write, in id order, waiting for a
        run that holds one, and return them as stored now. Job locks never wait (SKIP LOCKED) and every
        page takes its character locks at once, in the same global order, before its first write: so
        two overlapping runs can wait for each other but never deadlock (docs/reliability.md)."""
        if not ids:
            return []
        statement = sql.SQL("select {cols} from characters where id = any(%(ids)s) order by id for update").format(
            cols=self._columns("characters"))
        return self._fetch(Character, statement, {"ids": sorted(set(ids))})

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside `locked_jobs`: an exception rolls back only the writes made in this block."""
        with self._errors(), self.conn.transaction():
            yield

    def complete_job(self, job: Job, *, completed_at: datetime) -> Job:
        return self._update_job(
            job,
            sql.SQL("status = 'completed', completed_at = %(at)s, error_message = null"),
            {"at": completed_at},
        )

    def mark_failed(self, job: Job, *, message: str, at: datetime) -> Job:
        return self._update_job(
            job, sql.SQL("status = 'failed', error_message = %(message)s, completed_at = %(at)s"),
            {"message": message, "at": at},
        )

    def link_character(self, job: Job, character: Character) -> Job:
        # Only while the character is still the user's, under the name it was read with.
        return self._update_job(
            job,
            sql.SQL("metadata = jsonb_set(metadata, '{character_id}', to_jsonb(%(character)s::text))"),
            {"character": str(character.id), "name": character.name},
            extra=sql.SQL(" and jsonb_typeof(metadata) = 'object' and exists (select from characters c "
                          "where c.id = %(character)s::uuid and c.user_id = jobs.user_id and c.name = %(name)s)"),
        )

    def library_items_at(self, user_id: UUID, storage_path: str) -> list[LibraryItem]:
        statement = sql.SQL("select {cols} from user_library where user_id = %(user)s and storage_path = %(path)s").format(
            cols=self._columns("user_library")
        )
        return self._fetch(LibraryItem, statement, {"user": user_id, "path": storage_path})

    def library_items_at_paths(self, paths: Sequence[tuple[UUID, str]]) -> list[LibraryItem]:
        """`library_items_at` for a page of (user, storage path) pairs, in one statement."""
        if not paths:
            return []
        statement = sql.SQL(
            "select {cols} from user_library where user_id = any(%(users)s) "
            "and (user_id, storage_path) in (select * from unnest(%(owners)s::uuid[], %(paths)s::text[]))"
        ).format(cols=self._columns("user_library"))
        params = {"users": sorted({u for u, _ in paths}), "owners": [u for u, _ in paths], "paths": [p for _, p in paths]}
        return self._fetch(LibraryItem, statement, params)

    def insert_library_item(self, item: NewLibraryItem) -> LibraryItem:
        values = {k: v for k, v in item.model_dump().items() if self.schema.has("user_library", k)}
        values = {k: _db_value(v) for k, v in values.items() if v is not None}
        statement = sql.SQL("insert into user_library ({cols}) values ({marks}) returning {ret}").format(
            cols=sql.SQL(", ").join(sql.Identifier(k) for k in values),
            marks=sql.SQL(", ").join(sql.Placeholder(k) for k in values),
            ret=self._columns("user_library"),
        )
        try:
            return self._fetch(LibraryItem, statement, values)[0]
        except BackendError as exc:  # the job's transaction rolls back with the ChangedError
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise ChangedError(f"library row {item.id} was inserted by another writer meanwhile; "
                                   "nothing was inserted") from exc
            raise

    def upgrade_library_item(self, upgrade: LibraryUpgrade) -> LibraryItem:
        # Merged in the database, with the row as it is now: the job's lock does not cover the row.
        item = upgrade.row
        sets: list[sql.Composable] = []
        params: dict[str, Any] = {"id": item.id, "user": item.user_id}
        for n, (column, value) in enumerate(self._live(upgrade.set)):
            sets.append(sql.SQL("{c} = %(set{n})s").format(c=sql.Identifier(column), n=sql.SQL(str(n))))
            params[f"set{n}"] = _db_value(value)
        for n, (column, elements) in enumerate(self._live(upgrade.add)):
            sets.append(sql.SQL("{c} = (select array(select distinct t from unnest(coalesce({c}, '{{}}') || "
                                "%(add{n})s::text[]) t order by t))").format(c=sql.Identifier(column), n=sql.SQL(str(n))))
            params[f"add{n}"] = list(elements)
        for n, (column, keys) in enumerate(self._live(upgrade.merge)):
            sets.append(sql.SQL("{c} = coalesce({c}, '{{}}'::jsonb) || %(merge{n})s").format(
                c=sql.Identifier(column), n=sql.SQL(str(n))))
            params[f"merge{n}"] = Jsonb(keys)
        statement = sql.SQL(
            "update user_library set {sets} where id = %(id)s and user_id = %(user)s returning {ret}"
        ).format(sets=sql.SQL(", ").join(sets), ret=self._columns("user_library"))
        return self._one(LibraryItem, statement, params, what=f"library row {item.id}")

    def _live(self, columns: dict[str, T]) -> list[tuple[str, T]]:
        """The library columns the live table has (older schemas lack the newer ones)."""
        return [(column, value) for column, value in columns.items() if self.schema.has("user_library", column)]

    def update_character_image(self, character: Character, *, image_url: str, seed: int | None,
                               reference: bool = True) -> Character:
        sets = [sql.SQL("image_url = %(url)s")]
        if reference:
            sets.append(sql.SQL("reference_image_url = %(url)s"))
        if seed is not None:
            sets.append(sql.SQL("seed_locked = %(seed)s"))
        statement = sql.SQL(
            "update characters set {sets} where id = %(id)s and user_id = %(user)s and name = %(name)s "
            "and image_url is not distinct from %(current)s "
            "and reference_image_url is not distinct from %(current_reference)s returning {ret}"
        ).format(sets=sql.SQL(", ").join(sets), ret=self._columns("characters"))
        params = {"url": image_url, "seed": seed, "id": character.id, "user": character.user_id, "name": character.name,
                  "current": character.image_url, "current_reference": character.reference_image_url}
        return self._one(Character, statement, params, what=f"character {character.id}")

    def _update_job(self, job: Job, sets: sql.Composable, params: dict[str, Any], *,
                    extra: sql.Composable = NO_CONDITION) -> Job:
        statement = sql.SQL(
            "update jobs set {sets} where id = %(id)s and user_id = %(user)s and status = %(status)s{extra} returning {ret}"
        ).format(sets=sets, extra=extra, ret=self._columns("jobs"))
        return self._one(Job, statement, {**params, "id": job.id, "user": job.user_id, "status": job.status},
                         what=f"job {job.id}")

    def _one(self, model: type[M], statement: sql.Composable, params: dict[str, Any], *, what: str) -> M:
        rows = self._fetch(model, statement, params)
        if not rows:
            raise ChangedError(f"{what} changed since it was read; nothing was written to it")
        return rows[0]


def query(statement: sql.Composable) -> sql.Composed:
    """A statement as psycopg's `execute` is typed to take it."""
    return statement if isinstance(statement, sql.Composed) else sql.Composed([statement])


def _db_value(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, dict) else value

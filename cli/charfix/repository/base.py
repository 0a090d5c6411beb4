"""The repository interface: reads in batches (a page of jobs, then everything related to the page), the
writes a repair makes, and the page writes of a backend with transactions (docs/backends.md)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from charfix.errors import SchemaError
from charfix.diagnosis.portrait import LibraryUpgrade, NewLibraryItem
from charfix.models import Character, Job, LibraryItem, WorkspaceAsset

if TYPE_CHECKING:
    import psycopg

# Columns charfix reads or writes; the live tables have many more.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "jobs": ("id", "user_id", "job_type", "status", "error_message", "metadata", "created_at", "completed_at"),
    "workspace_assets": (
        "id", "user_id", "job_id", "asset_index", "asset_type", "temp_storage_path", "file_size_bytes",
        "mime_type", "generation_seed", "original_prompt", "model_used", "created_at",
    ),
    "characters": ("id", "user_id", "name", "image_url", "reference_image_url", "seed_locked", "created_at"),
    "user_library": (
        "id", "user_id", "asset_type", "storage_path", "file_size_bytes", "mime_type", "original_prompt",
        "model_used", "generation_seed", "tags", "content_category", "roleplay_metadata", "created_at",
    ),
}
OPEN_STATUSES = ("queued", "processing")  # the statuses the app's partial index on jobs covers
# open_before counts only jobs created since this: an app user can plant `-infinity` or a BC date, which no
# --since reaches and Python cannot hold; as the oldest they would blank the line or stop the command.
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
# Read when present: older schemas lack them.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "jobs": ("started_at",),
    "workspace_assets": ("width", "height", "thumbnail_path"),
    "characters": ("updated_at",),
    "user_library": (
        "thumbnail_path", "width", "height", "character_id", "output_type", "generation_metadata", "is_primary",
    ),
}


@dataclass(frozen=True)
class Schema:
    """The live columns of the four tables, read once at connect time."""

    columns: dict[str, frozenset[str]]

    @classmethod
    def from_columns(cls, live: dict[str, set[str]]) -> Schema:
        for table, needed in REQUIRED_COLUMNS.items():
            if table not in live:
                raise SchemaError(f"table '{table}' was not found", hint="check the schema (charfix reads public.*)")
            missing = [c for c in needed if c not in live[table]]
            if missing:
                raise SchemaError(f"table '{table}' lacks column(s) {', '.join(missing)} that charfix needs")
        return cls(columns={t: frozenset(cols) for t, cols in live.items()})

    def readable(self, table: str) -> list[str]:
        optional = [c for c in OPTIONAL_COLUMNS[table] if c in self.columns[table]]
        return list(REQUIRED_COLUMNS[table]) + optional

    def has(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, ())


@dataclass(frozen=True)
class JobQuery:
    """Which portrait jobs to look at."""

    since: datetime
    user_id: UUID | None = None
    job_ids: tuple[UUID, ...] = field(default=())


@dataclass(frozen=True)
class Backlog:
    """Portrait jobs created before a window that still say queued or processing: what `--since`
    hides that may need attention."""

    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class Page:
    """Keyset position: the last job of the previous page."""

    created_at: datetime
    id: UUID


@dataclass(frozen=True)
class User:
    id: UUID
    email: str | None


class UserDirectory(Protocol):
    def with_email(self, email: str) -> list[User]:
        """Every user whose email equals `email`, ignoring case (Auth stores emails lower-case;
        older rows and SSO users may differ only in case)."""
        ...


class Reader(Protocol):
    """The reads every command shares: in batches, a page of jobs and then everything related to it."""

    schema: Schema

    @property
    def queries(self) -> int:
        """Statements or requests sent, for the benchmarks and the batching tests (read-only: the
        REST adapter counts through its Caller)."""
        ...

    def portrait_jobs(self, query: JobQuery, *, after: Page | None, limit: int) -> list[Job]: ...

    def jobs_by_id(self, ids: Sequence[UUID]) -> list[Job]: ...

    def open_before(self, query: JobQuery) -> Backlog:
        """How many portrait jobs of the query's user (if any) created before `query.since` still say
        queued or processing, and the oldest one's time: one cheap query."""
        ...

    def job_ids_starting(self, prefix: str, *, limit: int) -> list[UUID]:
        """Ids of jobs whose id starts with `prefix` (lower-case hex and dashes), at most `limit`."""
        ...

    def ids_sharing_prefixes(self, column: str, ids: Sequence[UUID]) -> list[UUID]:
        """The distinct values of jobs.`column` ("id" or "user_id") whose first 8 hex digits are those
        of one of `ids`: what a shortest unique prefix must tell apart (docs/commands.md, "Ids")."""
        ...

    def user_ids_starting(self, prefix: str, *, limit: int) -> list[UUID]:
        """Distinct user ids of jobs whose text starts with `prefix`, at most `limit`."""
        ...

    def assets_for(self, job_ids: Sequence[UUID]) -> list[WorkspaceAsset]: ...

    def library_items_for(self, jobs: Sequence[Job], assets: Sequence[WorkspaceAsset]) -> list[LibraryItem]: ...

    def characters_for(self, ids: Sequence[UUID], names: Sequence[tuple[UUID, str]]) -> list[Character]:
        """Characters by id (any owner), and each user's characters whose normalized name matches."""
        ...

    def jobs_naming(self, names: Sequence[tuple[UUID, str]], *, since: datetime, until: datetime) -> list[Job]:
        """Portrait jobs created in [since, until] whose metadata names one of (user, character name)."""
        ...

    def characters_of(self, user_id: UUID) -> list[Character]:
        """Every character the user owns, oldest first (`charfix user`)."""
        ...

    def library_portraits_of(self, user_id: UUID) -> list[LibraryItem]:
        """The user's library rows the Characters tab shows (portrait.is_visible), oldest first."""
        ...

    def users(self) -> UserDirectory:
        """Supabase Auth's users, for `--user EMAIL` (repository/auth_users.py). Built on each call:
        the caller keeps it for the run."""
        ...

    def location(self) -> str:
        """Which database this is, without secrets: the audit log records it (docs/repairs.md)."""
        ...

    def close(self) -> None: ...


class PageWriter(Protocol):
    """Repairs of a page of jobs in one transaction, a savepoint per job (`backfill-portraits` over
    Postgres, docs/repairs.md): what a backend with transactions adds to the Writer."""

    def locked_jobs(self, job_ids: Sequence[UUID]) -> AbstractContextManager[list[Job]]:
        """One transaction for the page; yields the jobs whose row locks it took (SKIP LOCKED)."""
        ...

    def lock_characters(self, ids: Sequence[UUID]) -> list[Character]:
        """Inside `locked_jobs`: lock the characters the page will write, in id order; as stored now."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Inside `locked_jobs`: an exception rolls back only the writes made in this block."""
        ...

    def library_items_at_paths(self, paths: Sequence[tuple[UUID, str]]) -> list[LibraryItem]:
        """`library_items_at` for a page of (user, storage path) pairs, at once."""
        ...


class Writer(Protocol):
    """The writes a repair makes; each is conditional on the row as read (ChangedError otherwise)."""

    transactional: bool  # True: a job's row writes commit or roll back together, under its lock

    def locked(self, job_id: UUID) -> AbstractContextManager[bool]: ...

    def complete_job(self, job: Job, *, completed_at: datetime) -> Job: ...

    def mark_failed(self, job: Job, *, message: str, at: datetime) -> Job: ...

    def link_character(self, job: Job, character: Character) -> Job:
        """Write the character's id into the job's metadata, while the character is still the job
        user's under the name it was read with."""
        ...

    def library_items_at(self, user_id: UUID, storage_path: str) -> list[LibraryItem]: ...

    def insert_library_item(self, item: NewLibraryItem) -> LibraryItem:
        """Insert every field of `item` the live table has a column for (diagnosis/portrait.py)."""
        ...

    def upgrade_library_item(self, upgrade: LibraryUpgrade) -> LibraryItem:
        """Apply the upgrade's column operations the live table has columns for (diagnosis/portrait.py)."""
        ...

    def update_character_image(self, character: Character, *, image_url: str, seed: int | None,
                               reference: bool = True) -> Character: ...

    def transaction_id(self) -> int | None:
        """The id of the transaction in flight, recorded with its audit lines; None without transactions."""
        ...

    def transaction_status(self, xids: Sequence[int]) -> dict[int, str | None]:
        """What became of earlier transactions (committed, aborted, in progress, None: unknown)."""
        ...

    def pages(self) -> PageWriter | None:
        """The page writes, where the backend has transactions and savepoints; None otherwise."""
        ...

    def connection(self) -> psycopg.Connection[dict[str, Any]] | None:
        """The database connection the repairs' transactions run on (the database audit trail writes
        its records on it, docs/audit.md); None over REST."""
        ...


class Repository(Reader, Writer, Protocol):
    """What the services call on a backend's tables: both adapters satisfy it."""


UUID_LAYOUT = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


def prefix_range(prefix: str) -> tuple[str, str]:
    """The lowest and highest uuid whose text starts with `prefix` (lower-case hex, dashes in place).
    Postgres orders uuids by their bytes, the order of their hex text, so these bound exactly the ids
    with that prefix."""
    rest = UUID_LAYOUT[len(prefix):]
    return prefix + rest.replace("x", "0"), prefix + rest.replace("x", "f")


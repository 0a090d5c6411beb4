"""`storage.objects` in the server's own database, as the real Storage keeps it in the project's.

The real server writes one row per object into the project database (supabase/storage
migrations/tenant/0002-storage-schema.sql, and the columns later migrations added) whenever it
stores, copies, moves or deletes an object; `metadata` holds what its backend reported (eTag, size,
mimetype, cacheControl, lastModified, contentLength, httpStatusCode). This keeps the same rows for
the objects under the server's root: all of them when the server starts (files the tests put on
disk stand for objects uploaded earlier), then each upload, copy, move and delete as it happens.
A file put on disk while the server runs is listed by the API at once but gets its row only at the
next `sync()`: the real server has no such state.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime

import psycopg

SCHEMA = """
create schema if not exists storage;
create table if not exists storage.buckets (
    id text not null primary key,
    name text not null,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    public boolean default false,
    file_size_limit bigint,
    allowed_mime_types text[],
    owner_id text,
    type text not null default 'STANDARD'
);
create table if not exists storage.objects (
    id uuid not null default gen_random_uuid() primary key,
    bucket_id text references storage.buckets (id),
    name text,
    owner uuid,
    created_at timestamptz default now(),
    updated_at timestamptz default now(),
    last_accessed_at timestamptz default now(),
    metadata jsonb,
    path_tokens text[] generated always as (string_to_array(name, '/')) stored,
    version text,
    owner_id text,
    user_metadata jsonb
);
create unique index if not exists bucketid_objname on storage.objects (bucket_id, name);
create index if not exists idx_objects_bucket_id_name on storage.objects (bucket_id, name collate "C");
create index if not exists name_prefix_search on storage.objects (name text_pattern_ops);
alter table storage.objects enable row level security;
"""
COLUMNS = ("id", "bucket_id", "name", "owner_id", "created_at", "updated_at", "last_accessed_at", "metadata",
           "version", "user_metadata")
UPSERT = (
    f"insert into storage.objects ({', '.join(COLUMNS)}) values ({', '.join(['%s'] * len(COLUMNS))}) "
    "on conflict (bucket_id, name) do update set id = excluded.id, updated_at = excluded.updated_at, "
    "last_accessed_at = excluded.last_accessed_at, metadata = excluded.metadata, version = excluded.version, "
    "user_metadata = excluded.user_metadata"
)


class ObjectsTable:
    """The rows of storage.objects for one server; every call is made under the server's storage lock."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def replace_all(self, buckets: list[str], records: list[tuple[dict, datetime]]) -> None:
        """The rows of `buckets` become exactly `records` (and the bucket rows exactly `buckets`)."""
        with self._lock, self.conn.transaction():
            self.conn.execute(SCHEMA)
            self.conn.execute("delete from storage.objects where bucket_id is null or not (bucket_id = any(%s))",
                              (buckets,))
            self.conn.execute("delete from storage.buckets where not (id = any(%s))", (buckets,))
            for bucket in buckets:
                self.conn.execute("insert into storage.buckets (id, name) values (%s, %s) on conflict do nothing",
                                  (bucket, bucket))
            self.conn.execute("delete from storage.objects where bucket_id = any(%s)", (buckets,))
            with self.conn.cursor().copy(f"copy storage.objects ({', '.join(COLUMNS)}) from stdin") as copy:
                for record, updated in records:
                    copy.write_row(_values(record, updated))

    def put(self, record: dict, updated: datetime) -> None:
        with self._lock:
            self.conn.execute(UPSERT, _values(record, updated))

    def delete(self, bucket: str, key: str) -> None:
        with self._lock:
            self.conn.execute("delete from storage.objects where bucket_id = %s and name = %s", (bucket, key))


def _values(record: dict, updated: datetime) -> tuple:
    """A listing record (storage.py `_record`) as the row's values; `updated`: the file's time, to the
    microsecond (the listing shows it to the millisecond)."""
    user_metadata = record.get("user_metadata")
    return (record["id"], record["bucket_id"], record["name"], record.get("owner_id"), record["created_at"],
            updated, updated, json.dumps(record["metadata"]), record.get("version"),
            None if user_metadata is None else json.dumps(user_metadata))

"""The storage interface. Listing is by prefix, in batches, so a page of jobs costs one listing per folder."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

from charfix.models import StoredObject


class Storage(Protocol):
    @property
    def requests(self) -> int:
        """Requests sent (read-only: the Supabase adapter counts through its Caller)."""
        ...

    def location(self) -> str:
        """Where the objects are, without secrets: the audit log records it (docs/repairs.md)."""
        ...

    def close(self) -> None:
        """Release the connections; the storage is not used again."""
        ...

    def check_access(self) -> None:
        """Raise ConfigError unless both buckets exist and can be seen. Called once, before the
        first read: an empty listing is evidence only after this (docs/backends.md)."""
        ...

    def check_bucket(self, bucket: str) -> None:
        """check_access for one bucket (`charfix doctor` reports each on its own line)."""
        ...

    def check_writable(self, bucket: str) -> None:
        """Raise ConfigError where the adapter can tell, without writing, that charfix may not write
        to the bucket (`charfix doctor`)."""
        ...

    def remembering(self) -> Storage:
        """A view for one read (a scan, or one page's facts) that may keep each folder's listing once
        made and answer later lookups in that folder from it. A repair reads through the storage
        itself, afresh, inside its lock."""
        ...

    def list_prefixes(self, bucket: str, prefixes: Sequence[str]) -> list[StoredObject]:
        """Every object whose key starts with one of `prefixes` (each `folder/name-start`)."""
        ...

    def stat(self, bucket: str, keys: Sequence[str]) -> list[StoredObject]:
        """The objects among `keys` that exist."""
        ...

    def read(self, bucket: str, key: str) -> bytes: ...

    def content_md5(self, obj: StoredObject) -> str | None:
        """The MD5 of an object's bytes where the backend can tell it, else None (size alone then)."""
        ...

    def write(self, bucket: str, key: str, data: bytes, *, content_type: str) -> StoredObject: ...

    def copy(self, source_bucket: str, source_key: str, bucket: str, key: str) -> StoredObject:
        """Copy an object; an existing destination is overwritten (keys are deterministic)."""
        ...

    def delete(self, bucket: str, key: str) -> bool:
        """Remove one object; False when it was not there. Only `undo` deletes (docs/audit.md)."""
        ...


class Catalogue(Protocol):
    """Which objects exist: what the scan reads of storage. A Storage is one (its own listings); with a
    database URL on Supabase, storage.objects is another (storage/catalogue.py)."""

    def list_prefixes(self, bucket: str, prefixes: Sequence[str]) -> list[StoredObject]: ...

    def stat(self, bucket: str, keys: Sequence[str]) -> list[StoredObject]: ...


def by_folder(paths: Iterable[str]) -> dict[str, list[str]]:
    """Split `folder/name` paths (keys or prefixes) into the names wanted in each folder, so that an
    adapter lists each folder once."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        folder, _, name = path.rpartition("/")
        grouped[folder].append(name)
    return grouped

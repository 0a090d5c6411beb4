"""Storage in a local directory: `<root>/<bucket>/<key>`. Used by the demo, the tests and staging copies."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from charfix.errors import BackendError, UsageError
from charfix.keys import key_problem
from charfix.models import StoredObject
from charfix.storage.base import by_folder


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests = 0

    def list_prefixes(self, bucket: str, prefixes: Sequence[str]) -> list[StoredObject]:
        found = []
        for folder, starts in by_folder(prefixes).items():
            wanted = tuple(starts)
            for entry in self._scan(bucket, folder):
                # The name test first: a user's folder holds every job's objects, few of them wanted.
                if entry.name.startswith(wanted) and entry.is_file():
                    found.append(self._object(bucket, f"{folder}/{entry.name}" if folder else entry.name, entry.stat()))
        return found

    def stat(self, bucket: str, keys: Sequence[str]) -> list[StoredObject]:
        found = []
        for key in keys:
            path = self._path(bucket, key)
            self.requests += 1
            if path.is_file():
                found.append(self._object(bucket, key, path.stat()))
        return found

    def read(self, bucket: str, key: str) -> bytes:
        self.requests += 1
        try:
            return self._path(bucket, key).read_bytes()
        except OSError as exc:
            raise BackendError(f"cannot read {bucket}/{key}: {exc.strerror}") from exc

    def write(self, bucket: str, key: str, data: bytes, *, content_type: str) -> StoredObject:
        path = self._path(bucket, key)
        self.requests += 1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader (or a crash) never sees half an object.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".charfix-") as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)
        except OSError as exc:
            raise BackendError(f"cannot write {bucket}/{key}: {exc.strerror}") from exc
        return self._object(bucket, key, path.stat())

    def copy(self, source_bucket: str, source_key: str, bucket: str, key: str) -> StoredObject:
        source, path = self._path(source_bucket, source_key), self._path(bucket, key)
        self.requests += 1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".charfix-") as tmp:
                with source.open("rb") as src:
                    shutil.copyfileobj(src, tmp)
            os.replace(tmp.name, path)
        except OSError as exc:
            raise BackendError(f"cannot copy {source_bucket}/{source_key} to {bucket}/{key}: {exc.strerror}") from exc
        return self._object(bucket, key, path.stat())

    def _scan(self, bucket: str, folder: str) -> list[os.DirEntry]:
        self.requests += 1
        try:
            with os.scandir(self._location(bucket, folder) if folder else os.path.join(self.root, bucket)) as entries:
                return list(entries)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BackendError(f"cannot list {bucket}/{folder}: {exc.strerror}") from exc

    def _path(self, bucket: str, key: str) -> Path:
        return Path(self._location(bucket, key))

    def _location(self, bucket: str, key: str) -> str:
        """The file's path as a string: listings ask for one per user folder, and Path is slow to build."""
        if key_problem(key) is not None or key_problem(bucket) is not None or "/" in bucket:
            raise UsageError(f"refusing storage key '{bucket}/{key}' ({key_problem(key) or 'bad bucket'})")
        return os.path.join(self.root, bucket, *key.split("/"))

    @staticmethod
    def _object(bucket: str, key: str, st: os.stat_result) -> StoredObject:
        updated = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)
        return StoredObject(bucket=bucket, key=key, size=st.st_size, updated_at=updated)

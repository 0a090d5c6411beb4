"""Storage in a local directory: `<root>/<bucket>/<key>`. Used by the demo, the tests and staging copies.

A bucket's tree is walked one folder at a time through directory descriptors opened with O_NOFOLLOW,
so a symbolic link anywhere under the bucket (at the key, or a folder on the way) is never listed,
read or written through: a user's folder cannot be made to reach another one's, or outside the
root. The root itself may be a link (an operator's choice)."""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat as st
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, UTC
from pathlib import Path

from charfix.errors import BackendError, ConfigError, UsageError
from charfix.diagnosis.keys import key_problem
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET, StoredObject
from charfix.storage.base import by_folder

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TEMP_PREFIX = ".charfix-"
CHUNK = 1 << 20


class LinkError(OSError):
    """A symbolic link on the way to a key: charfix does not follow it."""


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.requests = 0

    def location(self) -> str:
        return Path(self.root).resolve().as_uri()

    def close(self) -> None:
        """Nothing to release: every file and folder is closed as soon as it is used."""

    def remembering(self) -> LocalStorage:
        """Itself: a folder is listed again at no cost that a remembered listing would save."""
        return self

    def check_access(self) -> None:
        """A folder without a bucket's folder would list as empty, and read as lost portraits."""
        for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
            self.check_bucket(bucket)

    def check_bucket(self, bucket: str) -> None:
        if (self.root / bucket).is_symlink():
            # Never walked through (see above): it would list as empty, every job read lost.
            raise ConfigError(f"storage folder {self.root}: {bucket}/ is a symbolic link, which charfix does not "
                              "follow under the storage folder; point --storage-dir at a folder that holds "
                              f"{WORKSPACE_BUCKET}/ and {LIBRARY_BUCKET}/ themselves")
        if not (self.root / bucket).is_dir():
            raise ConfigError(f"storage folder {self.root} has no {bucket}/ folder: is it a copy of the "
                              f"project's storage? (it needs {WORKSPACE_BUCKET}/ and {LIBRARY_BUCKET}/)")

    def check_writable(self, bucket: str) -> None:
        if not os.access(self.root / bucket, os.W_OK | os.X_OK):
            raise ConfigError(f"{self.root / bucket} is not writable")

    def list_prefixes(self, bucket: str, prefixes: Sequence[str]) -> list[StoredObject]:
        found = []
        for folder, starts in by_folder(prefixes).items():
            wanted = tuple(starts)
            for name, info in self._scan(bucket, folder, wanted):
                found.append(self._object(bucket, f"{folder}/{name}" if folder else name, info))
        return found

    def stat(self, bucket: str, keys: Sequence[str]) -> list[StoredObject]:
        found = []
        for key in keys:
            self.requests += 1
            folders, name = self._parts(bucket, key)
            try:
                with self._folder(bucket, folders) as fd:
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError, LinkError):
                continue  # a link is not an object
            except OSError as exc:
                raise BackendError(f"cannot read {bucket}/{key}: {exc.strerror}") from exc
            if st.S_ISREG(info.st_mode):
                found.append(self._object(bucket, key, info))
        return found

    def read(self, bucket: str, key: str) -> bytes:
        self.requests += 1
        folders, name = self._parts(bucket, key)
        try:
            with self._folder(bucket, folders) as fd, _opened(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd) as file:
                return _read_all(file)
        except OSError as exc:
            raise BackendError(f"cannot read {bucket}/{key}: {_reason(exc)}") from exc

    def content_md5(self, obj: StoredObject) -> str | None:
        """The file's MD5, read as `read` does (no link followed): only the few objects a repair
        compares are hashed."""
        return hashlib.md5(self.read(obj.bucket, obj.key)).hexdigest()

    def write(self, bucket: str, key: str, data: bytes, *, content_type: str) -> StoredObject:
        self.requests += 1
        try:
            return self._replace(bucket, key, lambda out: _write_all(out, data))
        except OSError as exc:
            raise BackendError(f"cannot write {bucket}/{key}: {_reason(exc)}") from exc

    def copy(self, source_bucket: str, source_key: str, bucket: str, key: str) -> StoredObject:
        self.requests += 1
        source_folders, source_name = self._parts(source_bucket, source_key)

        def fill(out: int) -> None:
            with self._folder(source_bucket, source_folders) as fd, \
                    _opened(source_name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd) as src:
                while chunk := os.read(src, CHUNK):
                    _write_all(out, chunk)

        try:
            return self._replace(bucket, key, fill)
        except OSError as exc:
            raise BackendError(f"cannot copy {source_bucket}/{source_key} to {bucket}/{key}: {_reason(exc)}") from exc

    def delete(self, bucket: str, key: str) -> bool:
        """Remove one object (never through a link); False when it was not there. `undo` only."""
        self.requests += 1
        folders, name = self._parts(bucket, key)
        try:
            with self._folder(bucket, folders) as fd:
                if not st.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise LinkError(errno.ELOOP, "the key is not a plain file")
                os.unlink(name, dir_fd=fd)
                return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BackendError(f"cannot delete {bucket}/{key}: {_reason(exc)}") from exc

    def _replace(self, bucket: str, key: str, fill: Callable[[int], None]) -> StoredObject:
        """Write a temporary file beside the key, then rename it over the key, so a reader (or a crash)
        never sees half an object. A failure removes the temporary file."""
        folders, name = self._parts(bucket, key)
        with self._folder(bucket, folders, create=True) as fd:
            try:
                if st.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise LinkError(errno.ELOOP, "the key is a symbolic link")
            except FileNotFoundError:
                pass
            temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
            try:
                try:
                    fill(out)
                finally:
                    os.close(out)
                os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                _unlink_quietly(temp, fd)
                raise
            return self._object(bucket, key, os.stat(name, dir_fd=fd, follow_symlinks=False))

    def _scan(self, bucket: str, folder: str, wanted: tuple[str, ...]) -> list[tuple[str, os.stat_result]]:
        """(name, stat) of a folder's regular files named `wanted*` (a link is none); a missing folder,
        or one reached through a link, is empty."""
        self.requests += 1
        folders = self._parts(bucket, f"{folder}/x")[0] if folder else []
        try:
            with self._folder(bucket, folders) as fd, os.scandir(fd) as entries:
                # The name test first: a user's folder holds every job's objects, few of them wanted.
                return [(e.name, e.stat(follow_symlinks=False)) for e in entries
                        if e.name.startswith(wanted) and e.is_file(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError, LinkError):
            return []
        except OSError as exc:
            raise BackendError(f"cannot list {bucket}/{folder}: {exc.strerror}") from exc

    @contextmanager
    def _folder(self, bucket: str, folders: list[str], *, create: bool = False) -> Iterator[int]:
        """A descriptor of `<root>/<bucket>/<folders...>`, each step opened without following a link."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in [bucket, *folders]:
                parent, fd = fd, _step(fd, name, create=create)
                os.close(parent)
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _parts(bucket: str, key: str) -> tuple[list[str], str]:
        if key_problem(key) is not None or key_problem(bucket) is not None or "/" in bucket:
            raise UsageError(f"refusing storage key '{bucket}/{key}' ({key_problem(key) or 'bad bucket'})")
        parts = key.split("/")
        return parts[:-1], parts[-1]

    @staticmethod
    def _object(bucket: str, key: str, info: os.stat_result) -> StoredObject:
        updated = datetime.fromtimestamp(info.st_mtime, tz=UTC)
        return StoredObject(bucket=bucket, key=key, size=info.st_size, updated_at=updated)


def _step(parent: int, name: str, *, create: bool) -> int:
    """Open one folder below `parent`: never through a link."""
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            pass
    try:
        return os.open(name, DIRECTORY, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, parent):
            raise LinkError(errno.ELOOP, f"{name} is a symbolic link") from exc
        raise


def _is_link(name: str, parent: int) -> bool:
    try:
        return st.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


@contextmanager
def _opened(name: str, flags: int, *, dir_fd: int) -> Iterator[int]:
    try:
        fd = os.open(name, flags | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkError(errno.ELOOP, "the key is a symbolic link") from exc
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _reason(exc: OSError) -> str:
    if isinstance(exc, LinkError):
        return f"{exc.strerror}; charfix does not follow symbolic links in storage"
    return exc.strerror or str(exc)

"""Storage over the Supabase Storage API, through the supabase-py client's HTTP session.

Existence and size come from listings, one per folder (paginated), never one request per object.
A page's folders are listed in parallel (at most `Supabase.parallel` requests at once), and a scan
lists each folder once: its view (`remembering`) keeps the listings it made for later pages, while a
repair reads afresh inside its lock (docs/backends.md).
Copies run on the server (POST /object/copy with `destinationBucket`, which storage3's helper does
not expose) and overwrite the deterministic destination with `x-upsert: true`; a download and an
upload replace them only where the server refuses the copy.
"""

from __future__ import annotations

import copy
import posixpath
from functools import partial
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from charfix.errors import BackendError, ConfigError, UsageError
from charfix.http import Caller, Supabase, error_fields, refusal, storage_code
from charfix.diagnosis.keys import key_problem
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET, StoredObject
from charfix.storage.base import by_folder

LIST_LIMIT = 1000  # Storage takes 1..1500 per listing
# Files a scan's view keeps listed (about 1 KB each); past it the folders listed longest ago are
# dropped, and listed again if a later page needs them.
REMEMBERED_FILES = 100_000
# Keys wanted in a folder not listed yet are looked up by listings narrowed with `search`: one for
# all of them when their names share a start this long (a uuid's first 8 characters select one job's
# objects), else one for each of up to NARROWED_KEYS names, else the whole folder is listed.
COMMON_START = 8
NARROWED_KEYS = 2
MD5_ETAG = re.compile(r'"?([0-9a-fA-F]{32})"?')
CACHE_CONTROL = "max-age=3600"  # what the app's uploads (storage-js, cacheControl 3600) are stored with
# Storage answers these for a missing source: no fallback can help, the copy fails. So does any
# refusal whose body says 404, such as a missing destination bucket (InvalidRequest, "The related
# resource does not exist"): charfix then fails without downloading the source.
MISSING = {"NoSuchKey", "not_found", "NoSuchBucket"}
# A key the server will not take: falling back to download + upload would not help either.
DENIED = {"AccessDenied", "InvalidJWT", "Unauthorized", "InvalidSignature"}


class SupabaseStorage:
    def __init__(self, supabase: Supabase):
        self.supabase = supabase
        self.caller = Caller(supabase, "Supabase Storage")
        self.base = f"{supabase.url}/storage/v1"
        # (bucket, folder) -> its files, in the order listed; None: every read lists afresh.
        self._listings: dict[tuple[str, str], dict[str, dict[str, Any]]] | None = None

    @property
    def requests(self) -> int:
        return self.caller.count

    def location(self) -> str:
        return self.base

    def close(self) -> None:
        """Closes the HTTP client, which the REST repository may share: closing it twice is harmless."""
        self.supabase.close()

    def remembering(self) -> SupabaseStorage:
        """A view for one read that keeps each folder's listing once made (the same client and
        request count). Writes through the view forget the folder they write to."""
        if self._listings is not None:
            return self
        view = copy.copy(self)
        view._listings = {}
        return view

    def check_access(self) -> None:
        """Storage answers a listing of a missing bucket, and any listing by a key that row-level
        security leaves blind, with `200 []`: so look the two buckets up first (GET /bucket/{id}),
        which a service key sees and which names the refusal (docs/backends.md)."""
        for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
            self.check_bucket(bucket)

    def check_bucket(self, bucket: str) -> None:
        url = f"{self.base}/bucket/{quote(bucket, safe='')}"
        response = self.caller.send(f"bucket {bucket}", lambda: self._http.get(url, headers=self._headers()))
        if response.is_success:
            if _names_bucket(response, bucket):
                return
            # Some other web server (a catch-all proxy, a site) says 200 to everything: not a bucket.
            raise ConfigError(f"Supabase Storage: {self.base}/bucket/{bucket} answered HTTP {response.status_code} "
                              f"but not with bucket {bucket}; is SUPABASE_URL the project's URL (https://<ref>.supabase.co)?")
        code, message = error_fields(response)
        if code in ("NoSuchBucket", "Bucket not found"):
            raise ConfigError(f"Supabase Storage: bucket {bucket} does not exist in this project "
                              f"({refusal(response)}); charfix needs "
                              f"{WORKSPACE_BUCKET} and {LIBRARY_BUCKET}: is SUPABASE_URL the app's project?")
        raise self.caller.fail(f"bucket {bucket}", response)

    def check_writable(self, bucket: str) -> None:
        """Nothing to tell without writing: the service key (check_bucket) may write every bucket."""

    def list_prefixes(self, bucket: str, prefixes: Sequence[str]) -> list[StoredObject]:
        wanted = by_folder(prefixes)
        listings = self._listed(bucket, list(wanted))
        found = []
        for folder, names in wanted.items():
            for name, entry in listings[folder].items():
                if name.startswith(tuple(names)):
                    found.append(_object(bucket, _key(folder, name), entry))
        return found

    def stat(self, bucket: str, keys: Sequence[str]) -> list[StoredObject]:
        wanted = {folder: sorted(set(names)) for folder, names in by_folder(keys).items()}
        remembered = self._listings if self._listings is not None else {}
        # A folder listed already answers for its keys. Elsewhere a listing narrowed to the names'
        # common start (one key, or a stem with its extensions), or to each of a few names, costs a
        # request where the whole folder of a heavy user costs several.
        whole = [f for f in wanted if (bucket, f) in remembered or not _searches(wanted[f])]
        narrow = [(f, start) for f in wanted if f not in whole for start in _searches(wanted[f])]
        listings = self._listed(bucket, whole)
        narrowed = self.supabase.map(lambda k: self._fetch(bucket, k[0], search=k[1]), narrow)
        for (folder, _), files in zip(narrow, narrowed, strict=True):
            listings.setdefault(folder, {}).update(files)
        found = []
        for folder, names in wanted.items():
            files = listings[folder]
            found += [_object(bucket, _key(folder, name), files[name]) for name in names if name in files]
        return found

    def read(self, bucket: str, key: str) -> bytes:
        return self._download(bucket, key)[0]

    def content_md5(self, obj: StoredObject) -> str | None:
        """From the listing's eTag, without a download; None when the eTag is no MD5."""
        return obj.content_md5

    def _download(self, bucket: str, key: str) -> tuple[bytes, str]:
        url = f"{self.base}/object/authenticated/{bucket}/{_path(bucket, key)}"
        response = self.caller.send(f"bucket {bucket}", lambda: self._http.get(url, headers=self._headers()))
        if not response.is_success:
            raise self.caller.fail(f"bucket {bucket}, reading {key}", response)
        return response.content, response.headers.get("content-type") or _content_type(key)

    def write(self, bucket: str, key: str, data: bytes, *, content_type: str) -> StoredObject:
        self._upload(bucket, key, data, content_type)
        return StoredObject(bucket=bucket, key=key, size=len(data))

    def copy(self, source_bucket: str, source_key: str, bucket: str, key: str) -> StoredObject:
        _path(source_bucket, source_key)
        _path(bucket, key)
        body = {"bucketId": source_bucket, "sourceKey": source_key, "destinationBucket": bucket,
                "destinationKey": key}
        # Overwrite with x-upsert rather than delete-then-copy: a crash between the delete and the
        # copy would lose the library object that a row or a character already points at.
        headers = {**self._headers(), "x-upsert": "true"}
        self._forget(bucket, key)
        url = f"{self.base}/object/copy"
        response = self.caller.send(f"bucket {bucket}", lambda: self._http.post(url, json=body, headers=headers))
        if not response.is_success:
            code = storage_code(response)
            if response.status_code >= 500 or code in MISSING or code in DENIED or _body_status(response) == "404":
                raise self.caller.fail(f"bucket {bucket}, copying {source_bucket}/{source_key} to {key}", response)
            # Refused (an older Storage without cross-bucket copy or upsert on copy): do it here.
            data, content_type = self._download(source_bucket, source_key)
            self._upload(bucket, key, data, content_type)
        copied = self.stat(bucket, [key])
        if not copied:
            raise BackendError(f"Supabase Storage: bucket {bucket}: {key} is missing right after the copy")
        return copied[0]

    def delete(self, bucket: str, key: str) -> bool:
        """Remove one object; False when it was not there. `undo` only."""
        url = f"{self.base}/object/{bucket}/{_path(bucket, key)}"
        response = self.caller.send(f"bucket {bucket}", lambda: self._http.delete(url, headers=self._headers()))
        if not response.is_success:
            if storage_code(response) in MISSING or _body_status(response) == "404":
                return False
            raise self.caller.fail(f"bucket {bucket}, deleting {key}", response)
        return True

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def _http(self) -> httpx.Client:
        return self.supabase.http

    def _headers(self) -> dict[str, str]:
        return self.supabase.auth_headers()

    def _listed(self, bucket: str, folders: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Each folder's files by name: those this view listed already, the rest listed in parallel."""
        remembered = self._listings
        if remembered is None:
            return dict(zip(folders, self.supabase.map(lambda f: self._fetch(bucket, f), folders), strict=True))
        missing = [f for f in folders if (bucket, f) not in remembered]
        for folder, files in zip(missing, self.supabase.map(lambda f: self._fetch(bucket, f), missing), strict=True):
            remembered[(bucket, folder)] = files
        listings = {}
        for folder in folders:
            listings[folder] = remembered.pop((bucket, folder))
            remembered[(bucket, folder)] = listings[folder]  # the most recently used last
        self._trim(remembered)
        return listings

    def _trim(self, remembered: dict[tuple[str, str], dict[str, dict[str, Any]]]) -> None:
        held = sum(len(files) for files in remembered.values())
        while held > REMEMBERED_FILES and len(remembered) > 1:
            held -= len(remembered.pop(next(iter(remembered))))

    def _forget(self, bucket: str, key: str) -> None:
        if self._listings is not None:
            self._listings.pop((bucket, key.rpartition("/")[0]), None)

    def _fetch(self, bucket: str, folder: str, *, search: str = "") -> dict[str, dict[str, Any]]:
        """Every file directly in `folder` (whose name starts with `search`, without regard to case),
        by name: one request per LIST_LIMIT entries."""
        url = f"{self.base}/object/list/{quote(bucket, safe='')}"
        files: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            body: dict[str, Any] = {"prefix": folder, "limit": LIST_LIMIT, "offset": offset,
                                    "sortBy": {"column": "name", "order": "asc"}}
            if search:
                # Storage matches it as a prefix, case-insensitively (a superset): the caller keeps
                # exact names only.
                body["search"] = search
            response = self.caller.send(f"bucket {bucket}",
                                        partial(self._http.post, url, json=body, headers=self._headers()))
            if not response.is_success:
                raise self.caller.fail(f"bucket {bucket}, listing {folder or '/'}", response)
            entries = response.json()
            for entry in entries:
                if entry.get("id") is not None:  # folders have no id
                    files[entry["name"]] = entry
            if len(entries) < LIST_LIMIT:
                return files
            offset += len(entries)

    def _upload(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        url = f"{self.base}/object/{bucket}/{_path(bucket, key)}"
        self._forget(bucket, key)
        # Cache-Control as the app's own uploads carry it: a raw upload without it is stored no-cache.
        headers = {**self._headers(), "Content-Type": content_type, "Cache-Control": CACHE_CONTROL,
                   "x-upsert": "true"}
        # An upsert to a deterministic key: repeating it after a broken connection is harmless.
        response = self.caller.send(f"bucket {bucket}", lambda: self._http.post(url, content=data, headers=headers))
        if not response.is_success:
            raise self.caller.fail(f"bucket {bucket}, writing {key}", response)


def _searches(names: list[str]) -> list[str]:
    """The narrowed listings that find `names` in their folder; none: list the whole folder."""
    start = posixpath.commonprefix(names)
    if len(start) >= COMMON_START:
        return [start]
    return names if len(names) <= NARROWED_KEYS else []


def _names_bucket(response: httpx.Response, bucket: str) -> bool:
    """Whether an answer to GET /bucket/{id} is that bucket: Storage returns its record (id, name)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bucket in (body.get("id"), body.get("name"))


def _body_status(response: httpx.Response) -> str | None:
    """The real status Storage puts in a refusal's body (`statusCode`, a string)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return str(body.get("statusCode")) if isinstance(body, dict) and body.get("statusCode") is not None else None


def _path(bucket: str, key: str) -> str:
    if key_problem(key) is not None or key_problem(bucket) is not None or "/" in bucket:
        raise UsageError(f"refusing storage key '{bucket}/{key}' ({key_problem(key) or 'bad bucket'})")
    return "/".join(quote(p, safe="") for p in key.split("/"))


def _key(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _object(bucket: str, key: str, entry: dict[str, Any]) -> StoredObject:
    metadata = entry.get("metadata") or {}
    size = metadata.get("size", metadata.get("contentLength", 0)) or 0
    stamp = entry.get("updated_at") or metadata.get("lastModified")
    return StoredObject(bucket=bucket, key=key, size=int(size), updated_at=listed_time(stamp),
                        content_md5=_md5(metadata.get("eTag")))


def _md5(etag: Any) -> str | None:
    """The content's MD5 from an eTag, when the eTag is one: a quoted 32-digit hex string (the file
    backend's default, S3's for a single-part upload). A weak, mtime-based or multipart eTag
    (`"...-N"`) says nothing about the bytes."""
    if isinstance(etag, str):
        match = MD5_ETAG.fullmatch(etag)
        if match:
            return match.group(1).lower()
    return None


def listed_time(value: Any) -> datetime | None:
    """A listing's time as Storage writes it (ISO 8601, maybe with Z); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _content_type(key: str) -> str:
    import mimetypes

    return mimetypes.guess_type(posixpath.basename(key))[0] or "application/octet-stream"

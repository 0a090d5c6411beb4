"""Supabase Storage subset backed by ``<storage_root>/<bucket>/<key>`` files.

Error bodies follow supabase/storage's renderer: HTTP 400 (the service's
``userStatusCode``) with ``{"statusCode": "404", "code": "NoSuchKey",
"error": "not_found", "message": "Object not found"}`` and friends.
Per-object metadata (id, mimetype, cacheControl, timestamps, user metadata)
is kept in memory; files placed on disk by other means get derived values.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
import threading
import time
import uuid
from datetime import datetime, UTC
from pathlib import Path

from .objects_table import ObjectsTable
from .postgrest import Response


# The characters supabase/storage accepts in a key (src/storage/limits.ts, VALID_OBJECT_KEY).
VALID_KEY = re.compile(r"[A-Za-z0-9_/!.*'() &$=@;:+,?-]*")
LIST_CAP = 1500  # storage.search caps `limits` at 1,500 (migrations/tenant/0063-...sql)
BLIND = "new row violates row-level security policy"


class StorageError(Exception):
    """A refusal as supabase/storage renders it: HTTP 400 (its `userStatusCode`) unless the status is
    500, with `{statusCode, code, error, message}` in the body (src/http/error-handler.ts)."""

    def __init__(self, status_code: str, code: str, error: str, message: str) -> None:
        super().__init__(message)
        self.body = {"statusCode": status_code, "code": code, "error": error, "message": message}
        self.http = 500 if status_code == "500" else 400


def no_such_key() -> StorageError:
    return StorageError("404", "NoSuchKey", "not_found", "Object not found")


def no_such_bucket() -> StorageError:
    return StorageError("404", "NoSuchBucket", "Bucket not found", "Bucket not found")


def key_exists() -> StorageError:
    return StorageError("409", "KeyAlreadyExists", "Duplicate", "The resource already exists")


def invalid_key(key: str) -> StorageError:
    return StorageError("400", "InvalidKey", "InvalidKey", f"Invalid key: {key}")


def related_missing() -> StorageError:
    """A foreign key violation (23503): a write into a bucket that does not exist."""
    return StorageError("404", "InvalidRequest", "InvalidRequest", "The related resource does not exist")


def access_denied(message: str) -> StorageError:
    return StorageError("403", "AccessDenied", "Unauthorized", message)


def bad_request(message: str) -> StorageError:
    """A body that fails the route's JSON schema (Fastify's validation error, FST_ERR_VALIDATION)."""
    return StorageError("400", "InvalidRequest", "Error", message)


def internal_error() -> StorageError:
    """What an unexpected backend failure renders as, e.g. the file of a listed object is gone."""
    return StorageError("500", "InternalError", "Internal", "Internal Server Error")


def storage_refusal(message: str) -> Response:
    """A token Storage refuses (wrong secret, malformed): AccessDenied with jose's message."""
    e = access_denied(message)
    return _json(e.http, e.body)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(status: int, obj) -> Response:
    return Response(status, json.dumps(obj).encode(), {"Content-Type": "application/json; charset=utf-8"})


class StorageHandler:
    def __init__(self, root: Path, buckets: tuple[str, ...], dsn: str | None = None) -> None:
        self.root = Path(root)
        # storage.objects in the same database, as the real server keeps it (objects_table.py).
        self._objects = ObjectsTable(dsn) if dsn else None
        self.root.mkdir(parents=True, exist_ok=True)
        for b in buckets:
            (self.root / b).mkdir(exist_ok=True)
        self._meta: dict[tuple[str, str], dict] = {}
        # Objects still in the catalogue whose bytes are gone (see lose_bytes).
        self._lost: dict[tuple[str, str], dict] = {}
        self._lock = threading.RLock()
        self._folders: dict[str, tuple[int, dict[str, list[str]], list[str]]] = {}  # see _entries

    def lose_bytes(self, bucket: str, key: str) -> None:
        """Delete an object's file but keep its row: listings still show it, reads and copies fail
        with 500, as on a real server whose backend lost the file."""
        with self._lock:
            f = self._file(bucket, key)
            self._lost[(bucket, key)] = self._record(bucket, key, f)
            f.unlink()

    # -- storage.objects ------------------------------------------------------
    def sync_catalogue(self) -> None:
        """storage.objects holds exactly a row per object under the root (lost ones included)."""
        if self._objects is None:
            return
        with self._lock:
            buckets = sorted(b.name for b in self.root.iterdir() if b.is_dir() and not b.is_symlink())
            rows = []
            for bucket in buckets:
                for key in self._all_keys(bucket):
                    try:
                        rows.append(self._catalogued(bucket, key, self._file(bucket, key)))
                    except (StorageError, OSError):
                        continue  # a key the server could not have stored: no row, as in listings
            self._objects.replace_all(buckets, rows)

    def close(self) -> None:
        if self._objects is not None:
            self._objects.close()

    def _catalogued(self, bucket: str, key: str, f: Path) -> tuple[dict, datetime]:
        record = self._record(bucket, key, f)
        if f.is_file():
            return record, datetime.fromtimestamp(f.stat().st_mtime, UTC)
        return record, datetime.fromisoformat(record["updated_at"].replace("Z", "+00:00"))

    def _catalogue_put(self, bucket: str, key: str, f: Path) -> None:
        if self._objects is not None:
            self._objects.put(*self._catalogued(bucket, key, f))

    # -- paths --------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> Path:
        if not bucket or bucket in (".", "..") or "/" in bucket or "\\" in bucket or "\x00" in bucket:
            raise no_such_bucket()
        d = self.root / bucket
        if not d.is_dir():
            raise no_such_bucket()
        return d

    def _file(self, bucket: str, key: str) -> Path:
        """The file of a key. The real server refuses keys outside VALID_KEY; this one also refuses
        `.`/`..`/empty segments and anything that resolves outside the bucket (its files are real
        paths)."""
        _check_key(key)
        d = self._bucket_dir(bucket)
        f = d.joinpath(*key.split("/"))
        if d.resolve() not in f.resolve().parents:
            raise invalid_key(key)
        return f

    def _record(self, bucket: str, key: str, f: Path) -> dict:
        if (bucket, key) in self._lost and not f.is_file():
            return self._lost[(bucket, key)]
        st = f.stat()
        meta = self._meta.get((bucket, key)) or {}
        data = f.read_bytes()
        mimetype = meta.get("mimetype") or mimetypes.guess_type(key)[0] or "application/octet-stream"
        return {
            "name": key,
            "bucket_id": bucket,
            "owner": "",
            "owner_id": None,
            "id": meta.get("id") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"{bucket}/{key}")),
            "version": meta.get("version"),
            "updated_at": _iso(st.st_mtime),
            "created_at": meta.get("created_at") or _iso(st.st_mtime),
            "last_accessed_at": _iso(st.st_mtime),
            "metadata": {
                "eTag": '"' + hashlib.md5(data).hexdigest() + '"',
                "size": st.st_size,
                "mimetype": mimetype,
                # Files put on disk by the tests stand for the app's uploads, which carry max-age=3600.
                "cacheControl": meta.get("cacheControl") or "max-age=3600",
                "lastModified": _iso(st.st_mtime),
                "contentLength": st.st_size,
                "httpStatusCode": 200,
            },
            "user_metadata": meta.get("user_metadata"),
        }

    def _exists(self, bucket: str, key: str, f: Path) -> bool:
        return f.is_file() or (bucket, key) in self._lost

    def _bytes(self, bucket: str, key: str, f: Path) -> bytes:
        if not f.is_file():  # listed, but the backend has no file: an unexpected error, 500
            raise internal_error()
        return f.read_bytes()

    # -- dispatch -----------------------------------------------------------
    def handle(self, method: str, path: str, request, role: str = "service_role") -> Response:
        try:
            with self._lock:
                return self._dispatch(method, path, request, role == "service_role")
        except StorageError as e:
            if method == "HEAD":
                return Response(e.http, b"", {})
            return _json(e.http, e.body)

    def _dispatch(self, method: str, path: str, request, sees: bool) -> Response:
        """`sees`: the caller's role passes row-level security (service_role). Other roles see no
        bucket and no object row; bucket existence is still checked as superuser on reads."""
        segs = path.split("/")
        if segs[0] == "bucket" and method == "GET":
            if len(segs) == 1 or segs[1] == "":
                names = [b.name for b in sorted(self.root.iterdir()) if b.is_dir()] if sees else []
                return _json(200, [self._bucket_info(n) for n in names])
            if len(segs) == 2:
                self._bucket_dir(segs[1])
                if not sees:
                    raise no_such_bucket()
                return _json(200, self._bucket_info(segs[1]))
        if segs[0] == "object" and len(segs) >= 2:
            rest = segs[1:]
            if method == "POST" and rest[0] == "list" and len(rest) == 2:
                return self.list(rest[1], self._body_json(request), sees)
            if method == "POST" and rest == ["copy"]:
                return self.copy(self._body_json(request), request, move=False, sees=sees)
            if method == "POST" and rest == ["move"]:
                return self.copy(self._body_json(request), request, move=True, sees=sees)
            if method == "DELETE" and len(rest) == 1:
                return self.remove(rest[0], self._body_json(request), sees)
            if method == "GET" and rest[0] == "info":
                r = rest[1:]
                if r and r[0] == "authenticated":
                    r = r[1:]
                if len(r) >= 2:
                    return self.info(r[0], "/".join(r[1:]), sees)
            if method in ("GET", "HEAD"):
                r = rest[1:] if rest[0] == "authenticated" else rest
                if rest[0] == "public" and len(rest) >= 3:
                    self._bucket_dir(rest[1])
                    raise no_such_bucket()  # every bucket here is private
                if len(r) >= 2:
                    return self.download(r[0], "/".join(r[1:]), head=(method == "HEAD"), sees=sees)
            if method in ("POST", "PUT") and len(rest) >= 2 and rest[0] not in ("list", "copy", "move", "sign", "upload"):
                upsert = method == "PUT" or (request.headers.get("x-upsert", "").lower() == "true")
                return self.upload(rest[0], "/".join(rest[1:]), request, upsert, sees)
            if method == "DELETE" and len(rest) >= 2:
                key = "/".join(rest[1:])
                f = self._file(rest[0], key)
                if not sees or not self._exists(rest[0], key, f):
                    raise no_such_key()
                self._delete(rest[0], key, f)
                return _json(200, {"message": "Successfully deleted"})
        return _json(404, {"message": f"Route {method}:/storage/v1/{path} not found",
                           "error": "Not Found", "statusCode": 404})

    def _body_json(self, request) -> dict:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise bad_request("Body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_request("body must be object")
        return body

    def _bucket_info(self, name: str) -> dict:
        st = (self.root / name).stat()
        return {"id": name, "name": name, "owner": "", "public": False, "type": "STANDARD",
                "file_size_limit": None, "allowed_mime_types": None,
                "created_at": _iso(st.st_ctime), "updated_at": _iso(st.st_mtime)}

    # -- operations -----------------------------------------------------------
    def _all_keys(self, bucket: str, needle: str = "") -> list[str]:
        """Keys of the bucket (lost objects included); with `needle` (lower case), only the folders
        that can hold keys starting with it are walked, so a listing costs its folder, not the
        bucket's thousands of user folders (os.walk's order and rules: symbolic links to folders
        are not followed)."""
        d = self._bucket_dir(bucket)
        keys = []
        stack = [(str(d), "")]
        while stack:
            path, rel = stack.pop()
            dirs, files = self._entries(path)
            keys += [rel + fn for fn in files]
            rest = needle[len(rel):]
            if "/" in rest:  # the needle names the folder at this level: look it up, case-insensitively
                wanted = dirs.get(rest.split("/", 1)[0], [])
            else:
                wanted = [c for names in dirs.values() for c in names if _may_hold(f"{rel}{c}/".lower(), needle)]
            stack += [(os.path.join(path, c), f"{rel}{c}/") for c in reversed(wanted)]
        return keys + [k for (b, k) in self._lost if b == bucket]

    def _entries(self, path: str) -> tuple[dict[str, list[str]], list[str]]:
        """A folder's subfolders (by lower-case name; links to folders left out, as os.walk does not
        follow them) and files, remembered while the folder's mtime stays. A folder changed in the
        last two seconds is read afresh: a file's mtime may not move within one clock tick."""
        try:
            stamp = os.stat(path).st_mtime_ns
        except OSError:
            return {}, []
        known = self._folders.get(path)
        if known is not None and known[0] == stamp:
            return known[1], known[2]
        dirs: dict[str, list[str]] = {}
        files = []
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    if not is_dir:
                        files.append(entry.name)
                    elif not entry.is_symlink():
                        dirs.setdefault(entry.name.lower(), []).append(entry.name)
        except OSError:
            return {}, []
        if time.time_ns() - stamp > 2_000_000_000:
            self._folders[path] = (stamp, dirs, files)
        return dirs, files

    def list(self, bucket: str, body: dict, sees: bool) -> Response:
        """`storage.search` as of supabase/storage v1.70.6 (migrations/tenant/0063-...sql)."""
        prefix, limit, offset, search, column, order = _list_options(body)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if not sees or not (self.root / bucket).is_dir() or "/" in bucket or bucket in ("", ".", ".."):
            return _json(200, [])  # search() is a query: no row, no error, for a missing bucket too
        whole = prefix + search
        needle = whole.lower()
        folders: dict[str, str] = {}  # lower(common prefix) -> the folder's name as listed
        files = []
        for key in self._all_keys(bucket, needle):
            if not key.lower().startswith(needle):
                continue
            slash = key.find("/", len(whole))
            if slash >= 0:
                common = key[: slash + 1]
                folders.setdefault(common.lower(), common.rstrip("/")[len(prefix):])
            else:
                try:
                    files.append(self._record(bucket, key, self._file(bucket, key)))
                except (StorageError, OSError):
                    continue  # a key the server could not have stored, or a file gone meanwhile
        desc = order == "desc"
        folder_rows = [(low, {"name": name, "id": None, "updated_at": None, "created_at": None,
                              "last_accessed_at": None, "metadata": None}) for low, name in folders.items()]
        file_rows = [(r["name"].lower(), {"name": r["name"][len(prefix):], "id": r["id"],
                                          "updated_at": r["updated_at"], "created_at": r["created_at"],
                                          "last_accessed_at": r["last_accessed_at"], "metadata": r["metadata"]})
                     for r in files]
        if column == "name":
            # One list ordered by lower(name) COLLATE "C": folders interleaved with files.
            rows = [row for _, row in sorted(folder_rows + file_rows, key=lambda t: t[0], reverse=desc)]
        else:
            # Other columns: the folders first (by name), then the files by that column.
            rows = [row for _, row in sorted(folder_rows, key=lambda t: t[0], reverse=desc)]
            rows += sorted((row for _, row in file_rows), key=lambda r: (r[column] or "", r["name"]), reverse=desc)
        return _json(200, rows[offset:offset + min(limit, LIST_CAP)])

    def _visible_file(self, bucket: str, key: str, sees: bool) -> Path:
        """An object for a read: the bucket is looked up as superuser (NoSuchBucket), the key checked
        (InvalidKey), then the row under the caller's role (NoSuchKey)."""
        self._bucket_dir(bucket)
        f = self._file(bucket, key)
        if not sees or not self._exists(bucket, key, f):
            raise no_such_key()
        return f

    def download(self, bucket: str, key: str, head: bool = False, sees: bool = True) -> Response:
        f = self._visible_file(bucket, key, sees)
        rec = self._record(bucket, key, f)
        data = self._bytes(bucket, key, f)
        headers = {"Content-Type": rec["metadata"]["mimetype"], "ETag": rec["metadata"]["eTag"],
                   "Cache-Control": rec["metadata"]["cacheControl"],
                   "Last-Modified": datetime.fromtimestamp(f.stat().st_mtime, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")}
        if head:
            headers["Content-Length"] = str(rec["metadata"]["size"])
            return Response(200, b"", headers)
        return Response(200, data, headers)

    def info(self, bucket: str, key: str, sees: bool = True) -> Response:
        f = self._visible_file(bucket, key, sees)
        r = self._record(bucket, key, f)
        m = r["metadata"]
        return _json(200, {"id": r["id"], "name": key, "version": r["version"], "bucket_id": bucket,
                           "size": m["size"], "content_type": m["mimetype"], "cache_control": m["cacheControl"],
                           "etag": m["eTag"], "metadata": r["user_metadata"],
                           "last_modified": r["updated_at"], "created_at": r["created_at"]})

    def upload(self, bucket: str, key: str, request, upsert: bool, sees: bool = True) -> Response:
        self._bucket_dir(bucket)  # the route looks the bucket up first (its size and type limits)
        f = self._file(bucket, key)
        if not sees:
            raise access_denied(BLIND)
        ctype = request.headers.get("Content-Type", "")
        user_meta = None
        if ctype.startswith("multipart/form-data"):
            # supabase/storage src/storage/uploader.ts: the form's cacheControl is a number of seconds.
            if not request.files:
                raise bad_request("No file found in request")
            part = next(iter(request.files.values()))
            data = part.read()
            mimetype = request.form.get("contentType") or part.mimetype or "text/plain;charset=UTF-8"
            if not request.form.get("contentType") and part.mimetype_params.get("charset"):
                mimetype = f"{part.mimetype};charset={part.mimetype_params['charset']}"
            seconds = request.form.get("cacheControl")
            cache = f"max-age={seconds}" if seconds else "no-cache"
            if request.form.get("metadata"):
                user_meta = json.loads(request.form["metadata"])
        else:
            # A raw body: the Content-Type and Cache-Control headers, verbatim, or their defaults.
            data = request.get_data()
            mimetype = ctype or "application/octet-stream"
            cache = request.headers.get("Cache-Control") or "no-cache"
        if self._exists(bucket, key, f) and not upsert:
            raise key_exists()
        if f.is_dir():
            raise invalid_key(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        old = self._meta.get((bucket, key), {})
        tmp = f.with_name(f".{f.name}.{uuid.uuid4().hex}.part")
        tmp.write_bytes(data)
        os.replace(tmp, f)
        self._lost.pop((bucket, key), None)
        new_id = str(uuid.uuid4())
        self._meta[(bucket, key)] = {
            "id": new_id, "mimetype": mimetype, "cacheControl": cache,
            "created_at": old.get("created_at") or _iso(f.stat().st_mtime), "user_metadata": user_meta,
            "version": str(uuid.uuid4()),
        }
        self._catalogue_put(bucket, key, f)
        return _json(200, {"Id": new_id, "Key": f"{bucket}/{key}"})

    def _delete(self, bucket: str, key: str, f: Path) -> None:
        if f.is_file():
            f.unlink()
        self._meta.pop((bucket, key), None)
        self._lost.pop((bucket, key), None)
        if self._objects is not None:
            self._objects.delete(bucket, key)
        d, top = f.parent, self.root / bucket
        while d != top and d.is_dir() and not any(d.iterdir()):  # storage has no empty folders
            d.rmdir()
            d = d.parent

    def remove(self, bucket: str, body: dict, sees: bool = True) -> Response:
        prefixes = body.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes or not all(isinstance(p, str) for p in prefixes):
            raise bad_request("body/prefixes must be a non-empty array of strings")
        self._bucket_dir(bucket)
        out = []
        for key in prefixes:
            try:
                f = self._file(bucket, key)
            except StorageError:
                continue
            if sees and self._exists(bucket, key, f):
                out.append(self._record(bucket, key, f))
                self._delete(bucket, key, f)
        return _json(200, out)

    def copy(self, body: dict, request, move: bool, sees: bool = True) -> Response:
        """supabase/storage src/storage/object.ts copyObject: the destination key is checked, the
        source row looked up (NoSuchKey), the destination row tried (a missing bucket is a foreign
        key violation, an existing key without x-upsert KeyAlreadyExists), then the bytes copied.
        The source's metadata (content type, cache control) goes with them."""
        for k in ("bucketId", "sourceKey", "destinationKey"):
            if not isinstance(body.get(k), str):
                raise bad_request(f"body must have required property '{k}'")
        src_b, dst_b = body["bucketId"], body.get("destinationBucket") or body["bucketId"]
        src_key, dst_key = body["sourceKey"], body["destinationKey"]
        _check_key(dst_key)
        try:
            src = self._file(src_b, src_key)
        except StorageError:
            raise no_such_key() from None  # a row lookup: an impossible key or bucket finds no row
        if not sees or not self._exists(src_b, src_key, src):
            raise no_such_key()  # row-level security hides the source row from other roles
        if not (self.root / dst_b).is_dir() or "/" in dst_b:
            raise related_missing()
        dst = self._file(dst_b, dst_key)
        upsert = request.headers.get("x-upsert", "").lower() == "true"
        if self._exists(dst_b, dst_key, dst) and not upsert and src != dst:
            raise key_exists()
        source = self._record(src_b, src_key, src)
        data = self._bytes(src_b, src_key, src)
        if src != dst:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            self._lost.pop((dst_b, dst_key), None)
        meta = dict(self._meta.get((src_b, src_key)) or {})
        meta.update({"id": str(uuid.uuid4()), "created_at": _iso(dst.stat().st_mtime),
                     "mimetype": source["metadata"]["mimetype"],
                     "cacheControl": source["metadata"]["cacheControl"], "version": str(uuid.uuid4())})
        self._meta[(dst_b, dst_key)] = meta
        self._catalogue_put(dst_b, dst_key, dst)
        if move:
            if src != dst:
                self._delete(src_b, src_key, src)
            return _json(200, {"message": "Successfully moved", "Id": meta["id"], "Key": dst_key})
        row = self._record(dst_b, dst_key, dst)
        return _json(200, {"Id": meta["id"], "Key": f"{dst_b}/{dst_key}", **row})


def _check_key(key: str) -> None:
    if not key or not VALID_KEY.fullmatch(key) or any(p in ("", ".", "..") for p in key.split("/")):
        raise invalid_key(key)


def _list_options(body: dict) -> tuple[str, int, int, str, str, str]:
    """The list route's JSON schema (src/http/routes/object/listObjects.ts), as Fastify words it."""
    prefix = body.get("prefix")
    if prefix is None:
        raise bad_request("body must have required property 'prefix'")
    if not isinstance(prefix, str):
        raise bad_request("body/prefix must be string")
    limit, offset = body.get("limit", 100), body.get("offset", 0)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise bad_request("body/limit must be integer")
    if limit < 1:
        raise bad_request("body/limit must be >= 1")
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise bad_request("body/offset must be integer")
    if offset < 0:
        raise bad_request("body/offset must be >= 0")
    search = body.get("search") or ""
    if not isinstance(search, str):
        raise bad_request("body/search must be string")
    sort = body.get("sortBy") or {}
    if not isinstance(sort, dict):
        raise bad_request("body/sortBy must be object")
    column = sort.get("column", "name")
    if column not in ("name", "updated_at", "created_at", "last_accessed_at"):
        raise bad_request("body/sortBy/column must be equal to one of the allowed values")
    order = sort.get("order", "asc")
    if order not in ("asc", "desc"):
        raise bad_request("body/sortBy/order must be equal to one of the allowed values")
    return prefix, limit, offset, search, column, order


def _may_hold(folder: str, needle: str) -> bool:
    """Whether keys under `folder` (ending in /) can start with `needle`."""
    return folder.startswith(needle) or needle.startswith(folder)

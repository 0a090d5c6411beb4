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
import shutil
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from .postgrest import Response


class StorageError(Exception):
    def __init__(self, status_code: str, code: str, error: str, message: str, http: int = 400) -> None:
        super().__init__(message)
        self.body = {"statusCode": status_code, "code": code, "error": error, "message": message}
        self.http = http


def no_such_key() -> StorageError:
    return StorageError("404", "NoSuchKey", "not_found", "Object not found")


def no_such_bucket() -> StorageError:
    return StorageError("404", "NoSuchBucket", "Bucket not found", "Bucket not found")


def duplicate() -> StorageError:
    return StorageError("409", "ResourceAlreadyExists", "Duplicate", "The resource already exists")


def invalid_key(key: str) -> StorageError:
    return StorageError("400", "InvalidKey", "InvalidKey", f"Invalid key: {key}")


def bad_request(message: str) -> StorageError:
    return StorageError("400", "InvalidRequest", "Bad Request", message)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _json(status: int, obj) -> Response:
    return Response(status, json.dumps(obj).encode(), {"Content-Type": "application/json; charset=utf-8"})


class StorageHandler:
    def __init__(self, root: Path, buckets: tuple[str, ...]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for b in buckets:
            (self.root / b).mkdir(exist_ok=True)
        self._meta: dict[tuple[str, str], dict] = {}
        self._lock = threading.RLock()

    # -- paths --------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> Path:
        if not bucket or bucket in (".", "..") or "/" in bucket or "\\" in bucket or "\x00" in bucket:
            raise no_such_bucket()
        d = self.root / bucket
        if not d.is_dir():
            raise no_such_bucket()
        return d

    def _file(self, bucket: str, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or "\x00" in key or "\\" in key:
            raise invalid_key(key)
        d = self._bucket_dir(bucket)
        f = d.joinpath(*parts)
        if d.resolve() not in f.resolve().parents:
            raise invalid_key(key)
        return f

    def _record(self, bucket: str, key: str, f: Path) -> dict:
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
                "cacheControl": "max-age=" + str(meta.get("cacheControl") or "3600"),
                "lastModified": _iso(st.st_mtime),
                "contentLength": st.st_size,
                "httpStatusCode": 200,
            },
            "user_metadata": meta.get("user_metadata"),
        }

    # -- dispatch -----------------------------------------------------------
    def handle(self, method: str, path: str, request) -> Response:
        try:
            with self._lock:
                return self._dispatch(method, path, request)
        except StorageError as e:
            if method == "HEAD":
                return Response(e.http, b"", {})
            return _json(e.http, e.body)

    def _dispatch(self, method: str, path: str, request) -> Response:
        segs = path.split("/")
        if segs[0] == "bucket" and method == "GET":
            if len(segs) == 1 or segs[1] == "":
                return _json(200, [self._bucket_info(b.name) for b in sorted(self.root.iterdir()) if b.is_dir()])
            if len(segs) == 2:
                self._bucket_dir(segs[1])
                return _json(200, self._bucket_info(segs[1]))
        if segs[0] == "object" and len(segs) >= 2:
            rest = segs[1:]
            if method == "POST" and rest[0] == "list" and len(rest) == 2:
                return self.list(rest[1], self._body_json(request))
            if method == "POST" and rest == ["copy"]:
                return self.copy(self._body_json(request), request, move=False)
            if method == "POST" and rest == ["move"]:
                return self.copy(self._body_json(request), request, move=True)
            if method == "DELETE" and len(rest) == 1:
                return self.remove(rest[0], self._body_json(request))
            if method == "GET" and rest[0] == "info":
                r = rest[1:]
                if r and r[0] == "authenticated":
                    r = r[1:]
                if len(r) >= 2:
                    return self.info(r[0], "/".join(r[1:]))
            if method in ("GET", "HEAD"):
                r = rest[1:] if rest[0] == "authenticated" else rest
                if rest[0] == "public" and len(rest) >= 3:
                    self._bucket_dir(rest[1])
                    raise no_such_bucket()  # every bucket here is private
                if len(r) >= 2:
                    return self.download(r[0], "/".join(r[1:]), head=(method == "HEAD"))
            if method in ("POST", "PUT") and len(rest) >= 2 and rest[0] not in ("list", "copy", "move", "sign", "upload"):
                upsert = method == "PUT" or (request.headers.get("x-upsert", "").lower() == "true")
                return self.upload(rest[0], "/".join(rest[1:]), request, upsert)
            if method == "DELETE" and len(rest) >= 2:
                f = self._file(rest[0], "/".join(rest[1:]))
                if not f.is_file():
                    raise no_such_key()
                self._delete(rest[0], "/".join(rest[1:]), f)
                return _json(200, {"message": "Successfully deleted"})
        return _json(404, {"message": f"Route {method}:/storage/v1/{path} not found",
                           "error": "Not Found", "statusCode": 404})

    def _body_json(self, request) -> dict:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise bad_request("Body is not valid JSON")
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
        """Keys of the bucket; with `needle` (lower case), only the folders that can hold keys starting
        with it are walked, so a listing costs its folder, not the whole bucket."""
        d = self._bucket_dir(bucket)
        keys = []
        for dirpath, dirs, files in os.walk(d):
            rel = os.path.relpath(dirpath, d).replace(os.sep, "/")
            rel = "" if rel == "." else rel + "/"
            dirs[:] = [c for c in dirs if _may_hold(f"{rel}{c}/".lower(), needle)]
            keys += [rel + fn for fn in files]
        return keys

    def list(self, bucket: str, body: dict) -> Response:
        prefix = body.get("prefix")
        if prefix is None:
            raise bad_request("body must have required property 'prefix'")
        limit = int(body.get("limit", 100))
        offset = int(body.get("offset", 0))
        search = body.get("search") or ""
        sort = body.get("sortBy") or {}
        column = sort.get("column") or "name"
        order = (sort.get("order") or "asc").lower()
        if column not in ("name", "updated_at", "created_at", "last_accessed_at"):
            raise bad_request(f"Invalid sort column: {column}")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        level = len(prefix.split("/"))  # 1-based token index of the listed level
        needle = (prefix + search).lower()
        folders, files = set(), []
        for key in self._all_keys(bucket, needle):
            if not key.lower().startswith(needle):
                continue
            tokens = key.split("/")
            if len(tokens) > level:
                folders.add(tokens[level - 1])
            elif len(tokens) == level:
                files.append(self._record(bucket, key, self._file(bucket, key)))
        rev = order == "desc"
        out = [{"name": f, "id": None, "updated_at": None, "created_at": None,
                "last_accessed_at": None, "metadata": None} for f in sorted(folders, reverse=rev)]
        files.sort(key=lambda r: (r[column] or "", r["name"]), reverse=rev)
        for r in files:
            out.append({"name": r["name"].split("/")[-1], "id": r["id"], "updated_at": r["updated_at"],
                        "created_at": r["created_at"], "last_accessed_at": r["last_accessed_at"],
                        "metadata": r["metadata"]})
        return _json(200, out[offset:offset + limit])

    def download(self, bucket: str, key: str, head: bool = False) -> Response:
        f = self._file(bucket, key)
        if not f.is_file():
            raise no_such_key()
        rec = self._record(bucket, key, f)
        headers = {"Content-Type": rec["metadata"]["mimetype"], "ETag": rec["metadata"]["eTag"],
                   "Cache-Control": rec["metadata"]["cacheControl"],
                   "Last-Modified": datetime.fromtimestamp(f.stat().st_mtime, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")}
        if head:
            headers["Content-Length"] = str(rec["metadata"]["size"])
            return Response(200, b"", headers)
        return Response(200, f.read_bytes(), headers)

    def info(self, bucket: str, key: str) -> Response:
        f = self._file(bucket, key)
        if not f.is_file():
            raise no_such_key()
        r = self._record(bucket, key, f)
        m = r["metadata"]
        return _json(200, {"id": r["id"], "name": key, "version": r["version"], "bucket_id": bucket,
                           "size": m["size"], "content_type": m["mimetype"], "cache_control": m["cacheControl"],
                           "etag": m["eTag"], "metadata": r["user_metadata"],
                           "last_modified": r["updated_at"], "created_at": r["created_at"]})

    def upload(self, bucket: str, key: str, request, upsert: bool) -> Response:
        f = self._file(bucket, key)
        ctype = request.headers.get("Content-Type", "")
        user_meta = None
        cache = request.headers.get("cache-control")
        if ctype.startswith("multipart/form-data"):
            if not request.files:
                raise bad_request("No file found in request")
            part = next(iter(request.files.values()))
            data = part.read()
            mimetype = part.mimetype or "text/plain;charset=UTF-8"
            if part.mimetype_params.get("charset"):
                mimetype = f"{part.mimetype};charset={part.mimetype_params['charset']}"
            cache = request.form.get("cacheControl") or cache
            if request.form.get("metadata"):
                user_meta = json.loads(request.form["metadata"])
        else:
            data = request.get_data()
            mimetype = ctype or "application/octet-stream"
        if f.exists() and not upsert:
            raise duplicate()
        if f.is_dir():
            raise invalid_key(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        old = self._meta.get((bucket, key), {})
        tmp = f.with_name(f".{f.name}.{uuid.uuid4().hex}.part")
        tmp.write_bytes(data)
        os.replace(tmp, f)
        new_id = str(uuid.uuid4())
        self._meta[(bucket, key)] = {
            "id": new_id, "mimetype": mimetype, "cacheControl": (cache or "3600").removeprefix("max-age="),
            "created_at": old.get("created_at") or _iso(f.stat().st_mtime), "user_metadata": user_meta,
            "version": str(uuid.uuid4()),
        }
        return _json(200, {"Id": new_id, "Key": f"{bucket}/{key}"})

    def _delete(self, bucket: str, key: str, f: Path) -> None:
        f.unlink()
        self._meta.pop((bucket, key), None)
        d, top = f.parent, self.root / bucket
        while d != top and not any(d.iterdir()):  # storage has no empty folders
            d.rmdir()
            d = d.parent

    def remove(self, bucket: str, body: dict) -> Response:
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
            if f.is_file():
                out.append(self._record(bucket, key, f))
                self._delete(bucket, key, f)
        return _json(200, out)

    def copy(self, body: dict, request, move: bool) -> Response:
        for k in ("bucketId", "sourceKey", "destinationKey"):
            if not isinstance(body.get(k), str):
                raise bad_request(f"body must have required property '{k}'")
        src_b, dst_b = body["bucketId"], body.get("destinationBucket") or body["bucketId"]
        src = self._file(src_b, body["sourceKey"])
        dst = self._file(dst_b, body["destinationKey"])
        if not src.is_file():
            raise no_such_key()
        upsert = request.headers.get("x-upsert", "").lower() == "true"
        if dst.exists() and not upsert and src != dst:
            raise duplicate()
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src != dst:
            shutil.copyfile(src, dst)
        meta = dict(self._meta.get((src_b, body["sourceKey"])) or {})
        meta.update({"id": str(uuid.uuid4()), "created_at": _iso(dst.stat().st_mtime),
                     "mimetype": self._record(src_b, body["sourceKey"], src)["metadata"]["mimetype"]})
        self._meta[(dst_b, body["destinationKey"])] = meta
        if move:
            if src != dst:
                self._delete(src_b, body["sourceKey"], src)
            return _json(200, {"message": "Successfully moved", "Id": meta["id"], "Key": body["destinationKey"]})
        return _json(200, {"Id": meta["id"], "Key": f"{dst_b}/{body['destinationKey']}"})


def _may_hold(folder: str, needle: str) -> bool:
    """Whether keys under `folder` (ending in /) can start with `needle`."""
    return folder.startswith(needle) or needle.startswith(folder)

"""The storage trust boundary: which keys charfix may read as a job's evidence or write as its destination.

Rows are written by app users (a manual "save to library" stores any `storage_path`), and charfix
runs with the service role, which bypasses row-level security. So a key is usable only when it is a
plain key in the job's own user's folder: `{user_id}/...`, nothing that a path, a URL decoder or the
Storage server could read another way (docs/reliability.md, "The trust boundary"). Everything here is
pure; every reader and writer of keys asks `own_key`, and the storage adapters ask `key_problem`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from uuid import UUID

MAX_SEGMENTS = 8  # the app writes two (`{user}/{file}`); a little room for folders, none for abuse
MAX_KEY_BYTES = 1024  # the Storage server's own limit on a key
# The real Storage server refuses keys with these (docs/domain.md, section 6); `\` is a separator on
# some systems and `%` would be decoded somewhere on the way.
REFUSED_CHARACTERS = frozenset("%#[]\\")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # one scan in C instead of a Python test per character


def key_problem(key: object) -> str | None:
    """Why `key` is not a plain storage key, or None. Ownership is not checked here (see own_key)."""
    if not isinstance(key, str) or not key:
        return "empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} bytes"
    if not key.isascii():
        return "not ASCII"
    if CONTROL.search(key):
        return "holds a control character"
    if refused := sorted(REFUSED_CHARACTERS.intersection(key)):
        return f"holds {' '.join(refused)}"
    if key.startswith("/"):
        return "absolute"
    segments = key.split("/")
    if len(segments) > MAX_SEGMENTS:
        return f"deeper than {MAX_SEGMENTS} segments"
    for segment in segments:
        if segment in ("", ".", ".."):
            return f"has an {'empty' if not segment else repr(segment)} segment"
        if segment != segment.strip():
            return "has a segment padded with spaces"
    return None


def own_key(user_id: UUID | str | None, raw: object, bucket: str | None = None) -> str | None:
    """The key `raw` names when it is a plain key inside the folder of `user_id`; None when it is
    anything else, which is then evidence of nothing. With `bucket`, `raw` is a path that may start
    with `bucket/` (a character's image_url, an old temp_storage_path): that prefix is dropped.
    Without, `raw` is the key itself (a library row's storage_path, a key about to be written)."""
    if user_id is None or not isinstance(raw, str):
        return None
    return _own_key(str(user_id), raw, bucket)


@lru_cache(maxsize=65_536)  # a scan asks about each row's key several times
def _own_key(user: str, raw: str, bucket: str | None) -> str | None:
    key = _without_bucket(raw, bucket)
    if key_problem(key) is not None:
        return None
    return key if key.split("/", 1)[0] == user and "/" in key else None


def _without_bucket(raw: str, bucket: str | None) -> str:
    return raw[len(bucket) + 1:] if bucket is not None and raw.startswith(bucket + "/") else raw


def why_not_own(user_id: UUID | str | None, raw: object, bucket: str | None = None) -> str:
    """For the diagnosis's evidence: what is wrong with a key that own_key refused."""
    if not isinstance(raw, str):
        return "not text"
    key = _without_bucket(raw, bucket)
    problem = key_problem(key)
    if problem is not None:
        return problem
    if "/" not in key:
        return "at the bucket's top level"
    return f"outside the folder of user {user_id}"

"""The HTTP path to Supabase, shared by the REST repository and the Storage adapter.

One supabase-py client per run, with a timeout on every call and supabase-py's own retries turned
off, so that charfix's policy here is the only one: bounded retries with exponential backoff and
jitter on connection errors, timeouts, 429 and 5xx, never on another 4xx. Failures become one line
naming the table or bucket, the HTTP status and the PostgREST or Storage error code. The service
role key is only ever in request headers; every message is scrubbed of it all the same.

supabase is imported inside `connect`, which only bootstrap calls.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from charfix.errors import BackendError, CharfixError, ConfigError

TIMEOUT_SECONDS = 15.0
# Requests in flight at once for independent reads (a page's folder listings, the chunks of a long id
# list): a round trip to a hosted project is 20-150 ms, so one after the other a page of listings
# costs minutes (docs/performance.md). Also the size of the connection pool.
PARALLEL = 12
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
# Failures where the request surely never reached the server: safe to repeat even for an insert.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Refusals of the key itself, not of the request: another project's key, an expired one, or a role
# that row-level security stops (docs/backends.md). The configuration is wrong, whatever the request.
KEY_REFUSALS = frozenset({"AccessDenied", "InvalidJWT", "InvalidSignature", "ExpiredToken",
                          "PGRST301", "PGRST302", "42501"})
SECRET_PREFIX, PUBLISHABLE_PREFIX = "sb_secret_", "sb_publishable_"


def key_role(key: str | None) -> str | None:
    """The role a Supabase key grants: `service_role` for an sb_secret_ key, `anon` for an
    sb_publishable_ key, else the `role` claim of a legacy JWT key (read, not verified: the server
    verifies the signature). None when the key is neither."""
    if not key:
        return None
    if key.startswith(SECRET_PREFIX):
        return "service_role"
    if key.startswith(PUBLISHABLE_PREFIX):
        return "anon"
    try:
        payload = key.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return None
    role = claims.get("role") if isinstance(claims, dict) else None
    return role if isinstance(role, str) else None


def require_service_key(key: str) -> None:
    """Refuse a key that row-level security leaves blind before anything is read: with it, Storage
    lists every folder as empty and PostgREST returns zero jobs, which would read as lost portraits
    and "nothing to do" (docs/backends.md, "Before the first read")."""
    role = key_role(key)
    if role == "service_role":
        return
    if key.startswith(PUBLISHABLE_PREFIX):
        kind = "a publishable key (sb_publishable_...)"
    elif role is not None:
        kind = f"a key with role {role!r}"
    else:
        kind = "neither a service_role JWT nor an sb_secret_ key"
    raise ConfigError(
        f"SUPABASE_SERVICE_ROLE_KEY is {kind}, not a service key: row-level security would hide the jobs "
        "and objects; use the project's service_role key or an sb_secret_ key (Project settings > API keys)"
    )


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # the first try and three retries
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, retry: int) -> float:
        # "Full jitter" between half and all of the exponential step: runs that failed together
        # (a 503 from an overloaded project) do not all come back at the same instant.
        step = min(self.cap_seconds, self.base_seconds * 2.0**retry)
        return step * random.uniform(0.5, 1.0)


class OutcomeUnknown(BackendError):
    """The connection broke after the request was sent: it may or may not have been applied."""


T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Supabase:
    """A supabase-py client and the httpx client under it (shared by both adapters)."""

    client: Any
    http: httpx.Client
    url: str
    key: str = field(repr=False)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    parallel: int = PARALLEL  # independent reads in flight at once (1: one after the other)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False, compare=False)

    def auth_headers(self) -> dict[str, str]:
        return {"apikey": self.key, "Authorization": f"Bearer {self.key}"}

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "[service key]") if self.key else text

    def map(self, read: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`read` of every item, at most `parallel` at once, the results in the items' order. Only for
        reads that do not depend on each other. The first failure in the items' order is raised, as it
        would have been one after the other; reads not yet started then never start."""
        items = list(items)
        if self.parallel <= 1 or len(items) <= 1:
            return [read(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="charfix-http")
        futures = [self._pool.submit(read, item) for item in items]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()


def connect(url: str, key: str, *, timeout: float = TIMEOUT_SECONDS, retry: RetryPolicy | None = None,
            parallel: int = PARALLEL) -> Supabase:
    """A client for the project at `url`; nothing is sent until the first request."""
    from supabase import create_client
    from supabase.lib.client_options import SyncClientOptions

    # httpx keeps up to 20 idle connections alive, more than PARALLEL: each parallel read reuses its own.
    http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True)
    options = SyncClientOptions(
        httpx_client=http,
        postgrest_client_retry=False,  # its 1-2-4 s retries of GETs would hide ours and slow every test
        auto_refresh_token=False,
        persist_session=False,
    )
    try:
        client = create_client(url, key, options=options)
    except Exception as exc:  # supabase raises its own SupabaseException for a malformed URL or key
        http.close()
        message = str(exc).replace(key, "[service key]") if key else str(exc)
        raise BackendError(f"cannot use the Supabase project at {url}: {message}") from None
    return Supabase(client=client, http=http, url=url.rstrip("/"), key=key, retry=retry or RetryPolicy(),
                    parallel=parallel)


@dataclass
class Caller:
    """Sends requests for one adapter under the retry policy, and counts every request sent."""

    supabase: Supabase
    service: str  # "Supabase REST" or "Supabase Storage", for messages
    count: int = 0
    unknown_outcomes: int = 0  # retries after a request whose fate was unknown (see OutcomeUnknown)
    # Requests may be sent from Supabase.map's threads: the counts are kept under a lock.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def send(self, what: str, request: Callable[[], httpx.Response], *, idempotent: bool = True) -> httpx.Response:
        """`request` sends one attempt. Non-idempotent requests are repeated only when the first try
        surely never arrived; otherwise OutcomeUnknown lets the caller look before it retries."""
        policy = self.supabase.retry
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            with self._lock:
                self.count += 1
            try:
                response = request()
            except httpx.TransportError as exc:
                if not isinstance(exc, NOT_SENT):
                    if not idempotent:
                        raise OutcomeUnknown(self._line(what, f"the connection broke ({type(exc).__name__})")) from None
                    with self._lock:
                        self.unknown_outcomes += 1
                if last:
                    raise BackendError(
                        self._line(what, f"no answer after {policy.attempts} attempts ({type(exc).__name__})"),
                        hint="check the project URL and the network; charfix retries with backoff",
                    ) from None
            else:
                if response.is_success or response.status_code not in RETRY_STATUSES or last:
                    return response
            policy.sleep(policy.delay(attempt))
        raise AssertionError("unreachable")

    def fail(self, what: str, response: httpx.Response) -> CharfixError:
        """One line for a refused request: what, HTTP status, the API's error code and message. A
        refusal of the key itself is a configuration error (exit 3), anything else a backend one."""
        code, _ = error_fields(response)
        detail = refusal(response)
        if response.status_code in (401, 403) or code in KEY_REFUSALS:
            return ConfigError(self._line(what, f"the key was refused ({detail}); is SUPABASE_SERVICE_ROLE_KEY "
                                                "this project's service role key?"))
        return BackendError(self._line(what, detail))

    def _line(self, what: str, detail: str) -> str:
        text = f"{self.service}: {what}: {detail}"
        return self.supabase.scrub(" ".join(text.split()))[:500]


def error_fields(response: httpx.Response) -> tuple[str | None, str | None]:
    """PostgREST answers {code, message, details, hint}; Storage {statusCode, code|error, message}."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None, response.reason_phrase or None
    if not isinstance(body, dict):
        return None, None
    code = body.get("code") or body.get("error")
    message = body.get("message") or body.get("msg")
    return (str(code) if code is not None else None), (str(message) if message is not None else None)


def refusal(response: httpx.Response) -> str:
    """`HTTP 400 NoSuchBucket (status 404): Bucket not found`: the status, the API's code, the real
    status where Storage puts it in the body (it refuses with HTTP 400), and the API's message."""
    code, message = error_fields(response)
    status = _body_status(response)
    return (f"HTTP {response.status_code}" + (f" {code}" if code else "") + (f" (status {status})" if status else "")
            + (f": {message}" if message else ""))


def _body_status(response: httpx.Response) -> str | None:
    """The status Storage puts in its body (`statusCode`), when it differs from the HTTP one."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    status = body.get("statusCode") if isinstance(body, dict) else None
    return str(status) if status is not None and str(status) != str(response.status_code) else None


def storage_code(response: httpx.Response) -> str | None:
    return error_fields(response)[0]


# -- PostgREST filter values --------------------------------------------------------------------
# Inside `in.(...)` lists and `or=(...)` trees PostgREST splits on `,` `)` (and `.`/`:` in keys), so
# every value there is double-quoted, with `\` and `"` escaped by a backslash (PostgREST's grammar).
# Top-level filter values (`col=eq.<value>`) are taken verbatim and need no quoting at all.


def quoted(value: object) -> str:
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def in_list(values: Iterable[object]) -> str:
    return "(" + ",".join(quoted(v) for v in values) + ")"


def array_literal(values: list[str]) -> str:
    """A Postgres array literal (`{"a","b"}`), for `eq` on a text[] column."""
    return "{" + ",".join(quoted(v) for v in values) + "}"

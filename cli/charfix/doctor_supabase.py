"""`doctor`'s checks over Supabase's HTTP APIs: the project answers, the tables and columns through
the OpenAPI description, write permission through a write that matches no row, the two buckets."""

from __future__ import annotations

import base64
import json

from charfix.config import Settings
from charfix.doctor import Checks, table_checks
from charfix.errors import CharfixError
from charfix.models import LIBRARY_BUCKET, WORKSPACE_BUCKET

NO_ROW = "00000000-0000-0000-0000-000000000000"
WRITTEN = ("jobs", "user_library", "characters")


def check_supabase(checks: Checks, settings: Settings, *, tables: bool, storage: bool) -> None:
    from charfix.http import Caller, connect

    try:
        supabase = connect(settings.supabase_url, settings.service_role_key)
    except CharfixError as exc:
        checks.add("Supabase project", "fail", exc.message, "check SUPABASE_URL (https://<project>.supabase.co)")
        return
    role = _role(settings.service_role_key)
    if role is None and settings.service_role_key.startswith("sb_secret_"):
        checks.add("Supabase key", "ok", "a secret key (sb_secret_…), which bypasses row-level security")
    elif role != "service_role":
        checks.add("Supabase key", "fail", f"the key's role is {role or 'unknown'}, not service_role",
                   "use the service role key (Project settings > API); row-level security hides other users' rows")
    else:
        checks.add("Supabase key", "ok", "service_role (from " + settings.origins.get("service_role_key", "?") + ")")
    caller = Caller(supabase, "Supabase")
    try:
        if tables:
            _tables(checks, supabase, caller)
        if storage:
            _buckets(checks, supabase, caller)
    finally:
        supabase.close()


def _tables(checks: Checks, supabase, caller) -> None:
    from charfix.repository.supabase import openapi_columns

    try:
        live = openapi_columns(supabase, caller)
    except CharfixError as exc:
        checks.add("Supabase REST", "fail", exc.message, "check SUPABASE_URL and the key")
        return
    checks.add("Supabase REST", "ok", "the API answers and describes its tables")
    table_checks(checks, live)
    for table in WRITTEN:
        if table in live:
            _may_write(checks, supabase, caller, table)
    checks.add("indexes", "warn", "not visible over the REST API",
               "run `charfix doctor` with SUPABASE_DB_URL set to see the index advice")


def _may_write(checks: Checks, supabase, caller, table: str) -> None:
    """A PATCH that matches no row: allowed or refused, and nothing changes either way."""
    url = f"{supabase.url}/rest/v1/{table}?id=eq.{NO_ROW}"
    headers = {**supabase.auth_headers(), "Prefer": "return=minimal", "Content-Type": "application/json"}
    _probe(checks, caller, f"table {table}", f"write permission on {table}",
           lambda: supabase.http.patch(url, json={"id": NO_ROW}, headers=headers),
           ok="an update that matches no row was accepted", refused="", fix="use the service role key")


def _buckets(checks: Checks, supabase, caller) -> None:
    for bucket in (WORKSPACE_BUCKET, LIBRARY_BUCKET):
        url = f"{supabase.url}/storage/v1/bucket/{bucket}"
        _probe(checks, caller, f"bucket {bucket}", f"bucket {bucket}",
               lambda url=url: supabase.http.get(url, headers=supabase.auth_headers()),
               ok="found in Supabase Storage", refused=": not found or not allowed",
               fix="check the project and that the key is the service role key")


def _probe(checks: Checks, caller, what: str, name: str, request, *, ok: str, refused: str, fix: str) -> None:
    """One request, one line: ok on success, the HTTP status (and a fix) otherwise."""
    try:
        response = caller.send(what, request)
    except CharfixError as exc:
        checks.add(name, "fail", exc.message)
        return
    if response.is_success:
        checks.add(name, "ok", ok)
    else:
        checks.add(name, "fail", f"HTTP {response.status_code}{refused}", fix)


def _role(key: str | None) -> str | None:
    """The `role` claim of a JWT-shaped key (read, not verified: the server verifies it)."""
    try:
        payload = key.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("role")
    except Exception:  # not a JWT: newer secret keys are opaque strings
        return None
